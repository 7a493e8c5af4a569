//! The scheduler against the real broker and database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)] // Test code.

mod broker_restart;
mod due_only;
mod gaps;
mod helpers;
mod isolation;
mod payments;
mod policy_change;
mod replicas;
mod rounds;
mod simulation;

mod lifecycle {
    relance_testkit::service_lifecycle_tests!(
        env!("CARGO_BIN_EXE_scheduler"),
        relance_runtime::ServiceName::Scheduler
    );
}

/// docs/admin-api.yaml and the router list the same requests.
#[test]
fn the_openapi_document_describes_every_admin_route() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let source = std::fs::read_to_string(root.join("services/scheduler/src/admin.rs")).unwrap();
    // `.route(` then the path literal, possibly on the next line once formatted.
    let mut routes: Vec<String> = source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    routes.sort();
    let document: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(root.join("docs/admin-api.yaml")).unwrap())
            .unwrap();
    let mut documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    documented.sort();
    assert_eq!(routes, documented);
}
