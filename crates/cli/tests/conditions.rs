//! Impairment models beyond delay and loss, through the real binary:
//! presets, asymmetric settings, burst loss and corruption, in the file
//! and with `weft impair` (docs/conditions.md).

mod common;

use common::Lab;

fn pair(impair: &str) -> String {
    format!(
        r#"name = "x"
[nodes.sw]
kind = "switch"
stp = "off"
[nodes.sw.interfaces.p1]
impair = {impair}
[nodes.h1.interfaces.eth0]
addresses = ["10.67.0.1/24"]
[nodes.h2.interfaces.eth0]
addresses = ["10.67.0.2/24"]
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
[[links]]
endpoints = ["h2:eth0", "sw:p2"]
"#
    )
}

fn settings(lab: &Lab) -> String {
    let s = lab.status_json();
    let p = s[0]["switches"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p1")
        .unwrap()
        .clone();
    p["impair"]["settings"].as_str().unwrap_or("").to_string()
}

/// Round-trip times of `count` pings (received only).
fn rtts(lab: &Lab, count: u32) -> Vec<f64> {
    let c = count.to_string();
    let o = lab.run(&[
        "ping",
        &lab.name,
        "h1",
        "10.67.0.2",
        "-c",
        &c,
        "-i",
        "0.05",
        "-W",
        "1",
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .map(|t| t.trim_end_matches(" ms").parse::<f64>().unwrap())
        .collect()
}

#[test]
fn presets_asymmetry_burst_and_corruption_reach_the_datapath() {
    // LTE with a long delay out of the switch (towards h1), 5 ms in.
    let lab = Lab::from_text(
        "cond",
        &pair(r#"{ preset = "lte", delay = "200ms", jitter = "0", in = { delay = "5ms" } }"#),
    );
    lab.up();
    assert_eq!(
        settings(&lab),
        "out: delay 200ms loss 0.5% rate 20mbit queue 200; in: delay 5ms"
    );
    let r = rtts(&lab, 10);
    assert!(r.len() >= 7, "{r:?}");
    // 200 ms one way and 5 the other; the same both ways would be 400.
    assert!(r.iter().all(|t| *t >= 204.0), "{r:?}");
    let min = r.iter().cloned().fold(f64::MAX, f64::min);
    assert!(min < 350.0, "{r:?}");

    // A preset at run time, one value overridden.
    lab.ok(&[
        "impair",
        &lab.name,
        "h1",
        "sw",
        "--preset",
        "satellite",
        "--loss",
        "0%",
    ]);
    assert_eq!(
        settings(&lab),
        "delay 300ms jitter 5ms rate 15mbit queue 500"
    );
    let r = rtts(&lab, 2);
    assert!(r.iter().all(|t| *t >= 590.0), "{r:?}");

    lab.ok(&[
        "impair", &lab.name, "h1", "sw", "--burst", "5%,20%", "--seed", "3",
    ]);
    assert_eq!(settings(&lab), "burst enter 5% exit 20% loss 100% seed 3");

    // Every frame towards h1 corrupted: its checksums fail, no echo
    // request is answered.
    assert_eq!(rtts(&lab, 3).len(), 3);
    lab.ok(&[
        "impair",
        &lab.name,
        "h1",
        "sw",
        "--corrupt",
        "100%",
        "--direction",
        "out",
    ]);
    assert_eq!(rtts(&lab, 3), Vec::<f64>::new(), "corrupted frames pass");

    let o = lab.run(&["impair", &lab.name, "h1", "sw", "--preset", "5g"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("preset `5g` is not known"),
        "{o:?}"
    );
}
