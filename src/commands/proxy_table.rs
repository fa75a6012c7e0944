//! The proxy-status view: node statuses as JSON (served by the admin API) and as a table.

use serde_json::{Value, json};

/// The types shown, in push order, with their short names.
const TYPES: &[(&str, &str)] = &[
    ("CDS", portico_xds::type_url::CLUSTER),
    ("EDS", portico_xds::type_url::ENDPOINT),
    ("LDS", portico_xds::type_url::LISTENER),
    ("RDS", portico_xds::type_url::ROUTE),
    ("SDS", portico_xds::type_url::SECRET),
];

pub fn proxy_status_json(cache: &portico_xds::Cache) -> Value {
    let fleets = cache.fleets();
    let mut nodes = cache.node_statuses();
    nodes.sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
    let items: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let mut types = serde_json::Map::new();
            for (short, url) in TYPES {
                let Some(t) = n.types.get(*url) else {
                    types.insert(short.to_string(), json!({"state": "NOT_SENT"}));
                    continue;
                };
                types.insert(
                    short.to_string(),
                    json!({
                        "state": t.state.as_str(),
                        "sent_version": t.sent_version,
                        "acked_version": t.acked_version,
                        "subscribed": t.subscribed,
                        "nack": t.last_nack.as_ref().map(|k| json!({
                            "version": k.version,
                            "message": k.message,
                            "resources": k.resource_names,
                        })),
                    }),
                );
            }
            json!({
                "node": n.node_id,
                "fleet": n.fleet,
                "known_fleet": fleets.contains(&n.fleet),
                "variant": n.variant.as_str(),
                "stream": n.stream_id,
                "connected_since": humantime(n.connected_since),
                "types": types,
            })
        })
        .collect();
    Value::Array(items)
}

fn humantime(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Renders nodes as aligned columns.
pub fn table(nodes: &[Value]) -> String {
    let mut rows = vec![
        [
            "NODE", "FLEET", "VARIANT", "CDS", "EDS", "LDS", "RDS", "SDS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for n in nodes {
        let mut fleet = n["fleet"].as_str().unwrap_or("").to_string();
        if n["known_fleet"] == false {
            fleet.push_str(" (unknown fleet)");
        }
        let mut row = vec![
            n["node"].as_str().unwrap_or("").to_string(),
            fleet,
            n["variant"].as_str().unwrap_or("").to_string(),
        ];
        for (short, _) in TYPES {
            row.push(
                n["types"][short]["state"]
                    .as_str()
                    .unwrap_or("NOT_SENT")
                    .replace('_', " "),
            );
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
