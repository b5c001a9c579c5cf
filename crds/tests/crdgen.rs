//! The generated CustomResourceDefinitions: names, scope and version as contract §7 states them,
//! schemas a Kubernetes 1.20 apiserver accepts as structural, and `chart/crds/` in step with the
//! types (run `cargo run -p agenttier-crds --bin crdgen -- chart/crds` when this drifts).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use agenttier_crds::{ClusterSandboxTemplate, Sandbox, SandboxTemplate};
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// Every CRD as JSON, with its chart file name.
fn crds() -> Vec<(&'static str, Value)> {
    [
        ("sandboxes.yaml", Sandbox::crd()),
        ("sandboxtemplates.yaml", SandboxTemplate::crd()),
        (
            "clustersandboxtemplates.yaml",
            ClusterSandboxTemplate::crd(),
        ),
    ]
    .into_iter()
    .map(|(file, crd)| (file, serde_json::to_value(crd).unwrap()))
    .collect()
}

/// The one version of `crd`, after checking there is exactly one.
fn only_version(crd: &Value) -> &Value {
    let versions = crd["spec"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "exactly one version");
    &versions[0]
}

/// The `openAPIV3Schema` of `crd`'s only version.
fn schema(crd: &Value) -> &Value {
    &only_version(crd)["schema"]["openAPIV3Schema"]
}

#[test]
fn names_scope_and_version_follow_the_contract() {
    let expected = [
        (
            "sandboxes.agenttier.io",
            "Sandbox",
            "sandboxes",
            "sandbox",
            "Namespaced",
        ),
        (
            "sandboxtemplates.agenttier.io",
            "SandboxTemplate",
            "sandboxtemplates",
            "sandboxtemplate",
            "Namespaced",
        ),
        (
            "clustersandboxtemplates.agenttier.io",
            "ClusterSandboxTemplate",
            "clustersandboxtemplates",
            "clustersandboxtemplate",
            "Cluster",
        ),
    ];
    for ((_, crd), (name, kind, plural, singular, scope)) in crds().iter().zip(expected) {
        assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(crd["metadata"]["name"], name);
        let spec = &crd["spec"];
        assert_eq!(spec["group"], "agenttier.io");
        assert_eq!(spec["names"]["kind"], kind);
        assert_eq!(spec["names"]["plural"], plural);
        assert_eq!(spec["names"]["singular"], singular);
        assert_eq!(spec["scope"], scope);
        let short_names = spec["names"]["shortNames"].as_array();
        assert!(
            short_names.is_none_or(Vec::is_empty),
            "{kind} has no short names"
        );
        assert!(
            spec["names"]["categories"].is_null(),
            "{kind} has no categories"
        );
        let version = only_version(crd);
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
    }
}

#[test]
fn sandbox_has_the_status_subresource_and_printer_columns() {
    let crd = serde_json::to_value(Sandbox::crd()).unwrap();
    let version = only_version(&crd);
    assert_eq!(version["subresources"], json!({"status": {}}));
    assert_eq!(
        version["additionalPrinterColumns"],
        json!([
            {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Template", "type": "string", "jsonPath": ".status.resolvedTemplate"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ])
    );
}

#[test]
fn templates_have_no_subresources_or_printer_columns() {
    for crd in [
        serde_json::to_value(SandboxTemplate::crd()).unwrap(),
        serde_json::to_value(ClusterSandboxTemplate::crd()).unwrap(),
    ] {
        let version = only_version(&crd);
        assert!(version["subresources"].is_null());
        assert!(version["additionalPrinterColumns"].is_null());
        assert!(schema(&crd)["properties"]["status"].is_null());
    }
}

#[test]
fn both_template_kinds_share_one_spec_schema() {
    let spec_properties = |crd: Value| schema(&crd)["properties"]["spec"]["properties"].clone();
    assert_eq!(
        spec_properties(serde_json::to_value(SandboxTemplate::crd()).unwrap()),
        spec_properties(serde_json::to_value(ClusterSandboxTemplate::crd()).unwrap()),
    );
}

#[test]
fn template_ref_kind_defaults_to_sandbox_template_in_the_schema() {
    let sandbox = serde_json::to_value(Sandbox::crd()).unwrap();
    let template_ref = &schema(&sandbox)["properties"]["spec"]["properties"]["templateRef"];
    assert_eq!(template_ref["required"], json!(["name"]));
    assert_eq!(
        template_ref["properties"]["kind"]["default"],
        "SandboxTemplate"
    );

    let template = serde_json::to_value(SandboxTemplate::crd()).unwrap();
    let inherits = &schema(&template)["properties"]["spec"]["properties"]["inheritsFrom"];
    assert_eq!(inherits["properties"]["kind"]["default"], "SandboxTemplate");
}

#[test]
fn enums_are_plain_string_enums() {
    let sandbox = serde_json::to_value(Sandbox::crd()).unwrap();
    let properties = &schema(&sandbox)["properties"];
    let mode = &properties["spec"]["properties"]["mode"];
    assert_eq!(mode["type"], "string");
    assert_eq!(mode["enum"], json!(["code", "agent"]));
    let phase = &properties["status"]["properties"]["phase"];
    assert_eq!(phase["type"], "string");
    assert_eq!(
        phase["enum"],
        json!(["Creating", "Running", "Stopped", "Error", "Deleting"])
    );
}

#[test]
fn wire_names_follow_the_contract() {
    let template = serde_json::to_value(SandboxTemplate::crd()).unwrap();
    let harness = &schema(&template)["properties"]["spec"]["properties"]["harness"]["properties"];
    assert!(harness["useHTTPExec"].is_object(), "harness.useHTTPExec");
    assert!(harness["useHttpExec"].is_null());
}

/// Keys a `JSONSchemaProps` node may carry in a structural schema. `$ref`, `definitions`,
/// `oneOf`, `anyOf`, `allOf` and `not` are deliberately absent.
const ALLOWED_KEYS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
    "example",
    "externalDocs",
];

/// Checks the structural-schema rules of apiextensions.k8s.io/v1 on `node` and everything below
/// it, collecting each violation with its path.
fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: not a schema object"));
        return;
    };
    for key in object.keys() {
        if !ALLOWED_KEYS.contains(&key.as_str()) && !key.starts_with("x-kubernetes-") {
            problems.push(format!("{path}: key {key:?} is not allowed"));
        }
    }
    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    let ty = object.get("type").and_then(Value::as_str);
    match (ty, int_or_string) {
        (Some(_), true) => problems.push(format!("{path}: int-or-string with a type")),
        (None, false) if !preserve => problems.push(format!("{path}: no type")),
        _ => {}
    }
    if let Some(values) = object.get("enum").and_then(Value::as_array)
        && (ty != Some("string") || !values.iter().all(Value::is_string))
    {
        problems.push(format!("{path}: enum that is not a string enum"));
    }
    if let Some(default) = object.get("default") {
        let matches = match ty {
            Some("string") => default.is_string(),
            Some("boolean") => default.is_boolean(),
            Some("integer") => default.is_i64() || default.is_u64(),
            Some("object") => default.is_object(),
            Some("array") => default.is_array(),
            _ => true,
        };
        if !matches {
            problems.push(format!("{path}: default of the wrong type"));
        }
    }
    if let Some(properties) = object.get("properties") {
        if object.contains_key("additionalProperties") {
            problems.push(format!("{path}: both properties and additionalProperties"));
        }
        if ty != Some("object") {
            problems.push(format!("{path}: properties on a non-object"));
        }
        for (name, child) in properties.as_object().into_iter().flatten() {
            check_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(additional) = object.get("additionalProperties") {
        check_structural(additional, &format!("{path}{{*}}"), problems);
    }
    match (ty, object.get("items")) {
        (Some("array"), Some(items)) => check_structural(items, &format!("{path}[]"), problems),
        (Some("array"), None) => problems.push(format!("{path}: array without items")),
        (_, Some(_)) => problems.push(format!("{path}: items on a non-array")),
        _ => {}
    }
    if let Some(required) = object.get("required").and_then(Value::as_array) {
        for name in required {
            let declared = name
                .as_str()
                .is_some_and(|n| object.get("properties").and_then(|p| p.get(n)).is_some());
            if !declared {
                problems.push(format!("{path}: required {name} is not a property"));
            }
        }
    }
}

#[test]
fn schemas_are_structural() {
    for (file, crd) in crds() {
        let root = schema(&crd);
        assert_eq!(root["type"], "object", "{file}");
        let top: Vec<_> = root["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for key in &top {
            assert!(
                ["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()),
                "{file}: unexpected top-level property {key}"
            );
        }
        assert!(
            root["properties"]["metadata"].is_null(),
            "{file}: metadata is not described"
        );
        let mut problems = Vec::new();
        check_structural(root, "", &mut problems);
        assert!(problems.is_empty(), "{file}:\n{}", problems.join("\n"));
        let text = crd.to_string();
        for banned in [
            "\"$ref\"",
            "\"definitions\"",
            "\"$defs\"",
            "\"oneOf\"",
            "\"anyOf\"",
            "\"allOf\"",
        ] {
            assert!(!text.contains(banned), "{file} contains {banned}");
        }
    }
}

#[test]
fn resource_quantities_are_int_or_string() {
    let sandbox = serde_json::to_value(Sandbox::crd()).unwrap();
    let resources = &schema(&sandbox)["properties"]["spec"]["properties"]["resources"];
    for map in ["limits", "requests"] {
        let quantity = &resources["properties"][map]["additionalProperties"];
        assert_eq!(quantity["x-kubernetes-int-or-string"], true, "{map}");
    }
}

/// A fresh, empty directory under the system temp dir for this test run.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agenttier-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn chart_crds_match_the_types() {
    let out = scratch_dir("crdgen");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "crdgen failed");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chart/crds");
    for (file, crd) in crds() {
        let generated = std::fs::read_to_string(out.join(file)).unwrap();
        let parsed: Value = serde_yaml::from_str(&generated).unwrap();
        assert_eq!(parsed, crd, "{file}: crdgen writes what ::crd() returns");
        let committed = std::fs::read_to_string(chart.join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "chart/crds/{file} is stale: run `cargo run -p agenttier-crds --bin crdgen -- chart/crds`"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}
