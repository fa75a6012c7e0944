//! Making manifests look applied to a cluster: what the API server adds on create, and the
//! objects a case creates at run time (written only in its notes).

use serde_json::{Value, json};

/// What the API server adds to every object it creates: `metadata.generation: 1` and a
/// `creationTimestamp` (`unix_secs`), where the manifest has none. With these, Portico's status
/// can carry observedGeneration and order conflicting routes by age as it would in a cluster.
pub fn as_created(docs: &[Value], unix_secs: u64) -> Vec<Value> {
    docs.iter()
        .cloned()
        .map(|mut doc| {
            let meta = &mut doc["metadata"];
            if meta.is_object() {
                if meta["generation"].is_null() {
                    meta["generation"] = json!(1);
                }
                if meta["creationTimestamp"].is_null() {
                    meta["creationTimestamp"] = json!(rfc3339(unix_secs));
                }
            }
            doc
        })
        .collect()
}

/// Objects a case creates at run time, written out only in its notes ("Run-time step: ...
/// creates a second TCPRoute ...:" followed by an indented manifest).
pub fn runtime_objects(notes: &str) -> Vec<Value> {
    if !notes.trim_start().starts_with("Run-time step") {
        return Vec::new();
    }
    let lines: Vec<&str> = notes.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let indent = lines[i].len() - lines[i].trim_start().len();
        if !lines[i].trim_start().starts_with("apiVersion:") || indent == 0 {
            i += 1;
            continue;
        }
        let block: Vec<&str> = lines[i..]
            .iter()
            .take_while(|l| l.len() - l.trim_start().len() >= indent && !l.trim().is_empty())
            .map(|l| &l[indent..])
            .collect();
        i += block.len();
        if let Ok(doc) = serde_yaml::from_str::<Value>(&block.join("\n"))
            && doc.is_object()
        {
            out.push(doc);
        }
    }
    out
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A Unix time as RFC 3339 UTC (seconds).
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runtime_objects_from_notes() {
        let notes = "Run-time step: then creates:\n  apiVersion: v1\n  kind: TCPRoute\n  metadata: {name: newer, namespace: ns}\n  spec:\n    rules: []\nThe status list ...\n";
        let objects = runtime_objects(notes);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["metadata"]["name"], "newer");
        let created = as_created(&objects, 1_700_000_000);
        assert_eq!(
            created[0]["metadata"]["creationTimestamp"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(created[0]["metadata"]["generation"], 1);
        assert!(runtime_objects("No run-time step here.\n  apiVersion: v1\n").is_empty());
    }
}
