//! `weft k8s`: the objects for a lab, through the real binary (no cluster,
//! no root: it only prints). The objects' shape is fixed by the golden
//! files of crates/k8s.

use std::process::Command;

fn k8s(text: &str, args: &[&str]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("weft-k8s-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join(format!("{}.toml", text.len()));
    std::fs::write(&f, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("k8s")
        .arg(&f)
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    o
}

/// The YAML stream's documents (crates/k8s's golden test checks that
/// kubectl reads the stream the same way).
fn docs(o: &std::process::Output) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_yaml_ng::Deserializer::from_str(&String::from_utf8_lossy(&o.stdout))
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn spreads_a_lab_without_machines_over_n_pods() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bridge.toml"),
    )
    .unwrap();
    let d = docs(&k8s(&text, &["--machines", "3", "--image", "img:1"]));
    let kinds: Vec<&str> = d.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ConfigMap", "Service", "StatefulSet"]);
    assert_eq!(d[0]["data"]["lab.toml"], text.as_str());
    assert_eq!(d[1]["spec"]["clusterIP"], "None");
    let spec = &d[2]["spec"];
    assert_eq!(spec["replicas"], 3);
    let c = &spec["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "img:1");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "agent",
            "/etc/weft/lab.toml",
            "--machine",
            "$(POD_NAME)",
            "--machines",
            "3"
        ]
    );
}

#[test]
fn refuses_what_a_cluster_would_refuse_before_printing() {
    let o = k8s(
        "name = \"my_lab\"\n[nodes.a]\n[nodes.b]\n",
        &["--machines", "2"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a Kubernetes object name"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = k8s(
        "name = \"lab\"\n[nodes.a]\n[nodes.b]\n",
        &["--machines", "3"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("--machines 3: lab lab has 2 node(s)"), "{err}");
    let o = k8s(
        "name = \"lab\"\n[machines.a]\nunderlay = \"a.lab\"\n[nodes.x]\n",
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("the pods of its StatefulSet are lab-0"),
        "{err}"
    );
}
