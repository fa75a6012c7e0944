//! The offline commands (`validate`, `status`, `translate`) and `proxy-status`.

mod offline;
mod proxy_status;
mod proxy_table;
pub mod redact;

pub use offline::{status, translate, validate};
pub use proxy_status::proxy_status;
pub use proxy_table::proxy_status_json;
