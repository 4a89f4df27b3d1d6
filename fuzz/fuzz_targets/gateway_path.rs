//! The gateway's view of a request line: target (path, owner, GraphQL),
//! the dot-segment check, and scope rules parsed from the input and
//! matched against the path. Never a panic; a path that passes the check
//! has no dot segment a URL parser could resolve.
#![no_main]

use gatehouse::gateway::clients::{Client, Scope};
use gatehouse::gateway::route::{check_path, target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rule, path) = text.split_once('\n').unwrap_or(("GET /.*", text));
    let Ok(uri) = path.parse::<http::Uri>() else {
        return;
    };
    let Some(t) = target(&uri) else {
        return;
    };
    if check_path(&t.path).is_ok() {
        assert!(!t.path.split('/').any(|s| s == ".." || s == "."));
    }
    if let Ok(scope) = Scope::parse(rule) {
        let client = Client {
            name: "fuzz".into(),
            scopes: vec![scope],
            owners: vec![],
            limits: Default::default(),
        };
        let _ = client.check_scope(&http::Method::GET, &t.path);
        if let Some(owner) = &t.owner {
            let _ = client.check_owner(owner);
        }
    }
});
