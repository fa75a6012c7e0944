//! The built-in example config, served when `portico serve` runs without `--config-dir`,
//! so a newcomer's first run works anywhere.

use portico_translator::{Problem, Resources};

const FILE: &str = "<built-in example>";
const EXAMPLE: &str = include_str!("../example/example.yaml");

pub fn load() -> (Resources, Vec<Problem>) {
    let mut resources = Resources::default();
    let (docs, problems) = portico_translator::parse_file(FILE, EXAMPLE);
    for doc in docs {
        resources.insert(FILE, doc);
    }
    (resources, problems)
}
