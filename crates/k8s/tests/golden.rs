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
    let docs: Vec<&str> = want.split("\n---\n").collect();
    assert_eq!(docs.len(), 3);
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &str) {
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        let typed: T = serde_json::from_str(doc).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), v);
    }
    round::<ConfigMap>(docs[0]);
    round::<Service>(docs[1]);
    round::<StatefulSet>(docs[2]);
}

#[test]
fn spread_lab_matches_golden() {
    golden(
        "demo-spread.json",
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
        "demo-machines.json",
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
