//! `weft k8s` output against golden files, and the golden files through
//! k8s-openapi's types and back unchanged (a field the API does not know,
//! or of the wrong type, would not survive). `WEFT_BLESS=1` rewrites the
//! golden files from the current output.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use weft_k8s::{render, Spec};

const LAB: &str = "name = \"demo\"\n[nodes.br]\nkind = \"bridge\"\nsubnet = \"10.0.0.0/24\"\n[nodes.h]\ncount = 4\nattach = \"br\"\n";

fn golden(name: &str, s: &Spec) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let out = render(s).unwrap();
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        out,
        want,
        "output differs from {} (WEFT_BLESS=1 to accept)",
        path.display()
    );
    let docs = kubectl_reads(&want).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "Service", "StatefulSet"]);
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(v: &serde_json::Value) {
        let typed: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), v);
    }
    round::<ConfigMap>(&docs[0]);
    round::<Service>(&docs[1]);
    round::<StatefulSet>(&docs[2]);
}

/// The documents of a stream as `kubectl apply -f` reads them
/// (apimachinery's `NewYAMLOrJSONDecoder`): a stream whose first
/// character after white space is `{` is a sequence of JSON values, any
/// other a YAML stream of documents separated by `---`.
fn kubectl_reads(stream: &str) -> Result<Vec<serde_json::Value>, String> {
    use serde::Deserialize;
    if stream.trim_start().starts_with('{') {
        serde_json::Deserializer::from_str(stream)
            .into_iter::<serde_json::Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    } else {
        serde_yaml_ng::Deserializer::from_str(stream)
            .map(|d| serde_json::Value::deserialize(d).map_err(|e| e.to_string()))
            .collect()
    }
}

/// The reader above refuses what `weft k8s` used to print (JSON documents
/// with `---` between them, of which kubectl applied only the first), and
/// takes both forms kubectl does.
#[test]
fn kubectl_reads_yaml_streams_and_json_sequences_not_json_with_separators() {
    assert!(kubectl_reads("{\"kind\": \"A\"}\n---\n{\"kind\": \"B\"}\n").is_err());
    assert_eq!(
        kubectl_reads("{\"kind\": \"A\"}\n{\"kind\": \"B\"}\n")
            .unwrap()
            .len(),
        2
    );
    assert_eq!(kubectl_reads("kind: A\n---\nkind: B\n").unwrap().len(), 2);
}

#[test]
fn spread_lab_matches_golden() {
    golden(
        "demo-spread.yaml",
        &Spec {
            lab: "demo",
            file: LAB,
            machines: 3,
            spread: true,
            image: "localhost/weft:latest",
            vxlan_port: 4789,
        },
    );
}

#[test]
fn lab_with_its_own_machines_matches_golden() {
    golden(
        "demo-machines.yaml",
        &Spec {
            lab: "demo",
            file: LAB,
            machines: 2,
            spread: false,
            image: "registry.example/weft:0.1",
            vxlan_port: 8472,
        },
    );
}
