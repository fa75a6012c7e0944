//! Route attachment: which listeners each parentRef of a route binds to, and with which
//! hostnames, per the Gateway API rules (sectionName, port, allowedRoutes, hostnames).

use crate::input::ObjectKey;
use crate::resolve::context::{Ctx, GATEWAY_GROUP};
use crate::resolve::gateway::{GatewayModel, ListenerSetModel};
use crate::resolve::model::ParentRef;

/// The parts of a route that attachment needs.
pub struct RouteHead {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// Creation timestamp (RFC 3339; empty = unknown), for precedence.
    pub created: String,
    pub parent_refs: Vec<ParentRef>,
    pub hostnames: Vec<String>,
}

/// One listener a parentRef attached to.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub gateway: usize,
    pub listener: usize,
    /// Route hostnames narrowed to the listener; empty = the listener's own hostname.
    pub hostnames: Vec<String>,
}

/// The outcome of one parentRef that names a Portico Gateway or ListenerSet.
pub struct ParentOutcome {
    pub parent_ref: ParentRef,
    pub gateway: usize,
    /// The listeners attached to, or the Accepted=False reason and message.
    pub result: Result<Vec<Attachment>, (String, String)>,
}

impl ParentOutcome {
    /// Appends the parentRef as written in route status (compact JSON, keys sorted as
    /// serde_json sorts them): group and kind defaulted, namespace when given or different
    /// from the route's.
    pub fn write_status_ref(&self, out: &mut String, route_ns: &str, parent_ns: &str) {
        use crate::status::json_str;
        let pr = &self.parent_ref;
        out.push_str("{\"group\":");
        json_str(out, pr.group.as_deref().unwrap_or(GATEWAY_GROUP));
        out.push_str(",\"kind\":");
        json_str(out, pr.kind.as_deref().unwrap_or("Gateway"));
        out.push_str(",\"name\":");
        json_str(out, &pr.name);
        if pr.namespace.is_some() || parent_ns != route_ns {
            out.push_str(",\"namespace\":");
            json_str(out, parent_ns);
        }
        if let Some(p) = pr.port {
            use std::fmt::Write;
            let _ = write!(out, ",\"port\":{p}");
        }
        if let Some(s) = &pr.section_name {
            out.push_str(",\"sectionName\":");
            json_str(out, s);
        }
        out.push('}');
    }
}

/// Counts a route's attachments on the listeners they attach to (status: attachedRoutes).
pub fn count(gateways: &mut [GatewayModel], outcomes: &[ParentOutcome]) {
    for a in outcomes.iter().flat_map(|o| o.result.iter().flatten()) {
        gateways[a.gateway].listeners[a.listener].attached_routes += 1;
    }
}

/// Resolves every parentRef of a route (pure: `count` adds the result to the listeners).
/// `uses_hostnames` is false for TCP/UDP routes.
pub fn attach(
    ctx: &Ctx,
    gateways: &[GatewayModel],
    sets: &[ListenerSetModel],
    head: &RouteHead,
    uses_hostnames: bool,
) -> Vec<ParentOutcome> {
    let mut out = Vec::new();
    for pr in &head.parent_refs {
        if pr.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
            continue;
        }
        let ns = pr
            .namespace
            .clone()
            .unwrap_or_else(|| head.key.namespace.clone());
        let kind = pr.kind.as_deref().unwrap_or("Gateway");
        let (gi, set) = match kind {
            "Gateway" => match gateways
                .iter()
                .position(|g| g.key.namespace == ns && g.key.name == pr.name)
            {
                Some(gi) => (gi, None),
                None => continue,
            },
            "ListenerSet" => match sets
                .iter()
                .find(|s| s.key.namespace == ns && s.key.name == pr.name)
            {
                Some(s) => (s.gateway, Some(s)),
                None => continue,
            },
            _ => continue,
        };
        let result = attach_one(ctx, &gateways[gi], gi, set, pr, head, uses_hostnames);
        out.push(ParentOutcome {
            parent_ref: pr.clone(),
            gateway: gi,
            result,
        });
    }
    out
}

fn attach_one(
    ctx: &Ctx,
    gw: &GatewayModel,
    gi: usize,
    set: Option<&ListenerSetModel>,
    pr: &ParentRef,
    head: &RouteHead,
    uses_hostnames: bool,
) -> Result<Vec<Attachment>, (String, String)> {
    if let Some((_, msg)) = &gw.not_accepted {
        return Err((
            "NoMatchingParent".into(),
            format!("Gateway {} is not accepted: {msg}", gw.key.name),
        ));
    }
    if let Some(set) = set
        && let Some((_, msg)) = &set.not_accepted
    {
        return Err((
            "NotAllowedByListeners".into(),
            format!("ListenerSet {} is not accepted: {msg}", set.key.name),
        ));
    }
    let owner_kind = if set.is_some() {
        "ListenerSet"
    } else {
        "Gateway"
    };
    // One pass over the listeners (no lists of candidates): which error applies depends only
    // on whether any listener matched the parentRef, was allowed, and took a hostname.
    let (mut any_candidate, mut any_allowed) = (false, false);
    // Only Selector listeners need the labels: built at most once, and only then.
    let route_labels = std::cell::OnceCell::new();
    let mut attached = Vec::new();
    for (i, l) in gw.listeners.iter().enumerate() {
        let candidate = l.owner.kind == owner_kind
            && set
                .is_none_or(|s| l.owner.name == s.key.name && l.owner.namespace == s.key.namespace)
            && pr.section_name.as_ref().is_none_or(|s| *s == l.spec.name)
            && pr.port.is_none_or(|p| p == l.spec.port);
        if !candidate {
            continue;
        }
        any_candidate = true;
        let kind_ok = l.supported_kinds.iter().any(|k| k.kind == head.key.kind);
        let ns = l
            .spec
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref());
        let ns_ok = match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
            "All" => true,
            "Selector" => ns.and_then(|n| n.selector.as_ref()).is_some_and(|s| {
                s.matches(route_labels.get_or_init(|| ctx.namespace_labels(&head.key.namespace)))
            }),
            _ => head.key.namespace == l.owner.namespace,
        };
        if !(l.attachable() && kind_ok && ns_ok) {
            continue;
        }
        any_allowed = true;
        let hostnames = if uses_hostnames {
            match intersect(l.spec.hostname.as_deref(), &head.hostnames) {
                Some(h) => h,
                None => continue,
            }
        } else {
            Vec::new()
        };
        attached.push(Attachment {
            gateway: gi,
            listener: i,
            hostnames,
        });
    }
    if !any_candidate {
        return Err((
            "NoMatchingParent".into(),
            "no listener matches the parentRef's sectionName and port".into(),
        ));
    }
    if !any_allowed {
        return Err((
            "NotAllowedByListeners".into(),
            "no listener of this parent allows this route".into(),
        ));
    }
    if attached.is_empty() {
        return Err((
            "NoMatchingListenerHostname".into(),
            "no listener hostname matches the route's hostnames".into(),
        ));
    }
    Ok(attached)
}

/// Route hostnames narrowed to a listener hostname. `Some(empty)` = no narrowing (the route
/// takes the listener's hostname); `None` = no intersection.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    if route.is_empty() {
        return Some(Vec::new());
    }
    let Some(listener) = listener.filter(|l| !l.is_empty() && *l != "*") else {
        return Some(route.iter().map(|h| h.to_ascii_lowercase()).collect());
    };
    let listener = listener.to_ascii_lowercase();
    let mut out = Vec::new();
    for h in route {
        let h = h.to_ascii_lowercase();
        let narrowed = match (listener.strip_prefix("*."), h.strip_prefix("*.")) {
            (None, None) => (h == listener).then(|| h.clone()),
            (Some(sfx), None) => h.ends_with(&format!(".{sfx}")).then(|| h.clone()),
            (None, Some(sfx)) => listener
                .ends_with(&format!(".{sfx}"))
                .then(|| listener.clone()),
            (Some(a), Some(b)) => {
                if a == b || a.ends_with(&format!(".{b}")) {
                    Some(listener.clone())
                } else if b.ends_with(&format!(".{a}")) {
                    Some(h.clone())
                } else {
                    None
                }
            }
        };
        if let Some(n) = narrowed
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    if out.is_empty() {
        return None;
    }
    // Narrowing to exactly the listener hostname is no narrowing at all.
    if out.contains(&listener) {
        return Some(Vec::new());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::intersect;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hostname_intersection() {
        assert_eq!(intersect(None, &v(&["a.com"])), Some(v(&["a.com"])));
        assert_eq!(intersect(Some("a.com"), &[]), Some(vec![]));
        assert_eq!(intersect(Some("a.com"), &v(&["b.com"])), None);
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["foo.example.com", "x.org"])),
            Some(v(&["foo.example.com"]))
        );
        assert_eq!(
            intersect(Some("foo.example.com"), &v(&["*.example.com"])),
            Some(vec![])
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["*.com"])),
            Some(vec![])
        );
        assert_eq!(
            intersect(Some("*.com"), &v(&["*.example.com"])),
            Some(v(&["*.example.com"]))
        );
        assert_eq!(intersect(Some("*.example.com"), &v(&["example.com"])), None);
    }
}
