//! `impair` presets, burst loss, corruption, queue and asymmetric settings
//! as the file writes them (docs/conditions.md).

use weft_topo::impair::{preset, Burst};
use weft_topo::parse;

fn lab(impair: &str) -> String {
    format!(
        r#"name = "c"
[nodes.sw]
kind = "switch"
[nodes.sw.interfaces.p1]
impair = {impair}
[nodes.h1.interfaces.eth0]
addresses = ["10.1.0.1/24"]
[[links]]
endpoints = ["h1:eth0", "sw:p1"]
"#
    )
}

fn port_impair(text: &str) -> weft_topo::impair::Impairment {
    let l = parse(text).unwrap_or_else(|e| panic!("{e:?}")).lab;
    l.nodes["sw"].switch.as_ref().unwrap().ports["p1"]
        .impair
        .clone()
        .unwrap()
}

#[test]
fn presets_models_and_directions_parse() {
    let i = port_impair(&lab(r#"{ preset = "wifi", loss = "2%", seed = 9 }"#));
    let mut want = preset("wifi").unwrap();
    want.loss_ppm = 20_000;
    want.seed = Some(9);
    assert_eq!(i, want);

    let i = port_impair(&lab(
        r#"{ burst = { enter = "1%", exit = "25%" }, corrupt = "0.1%", rate = "1mbit", queue = 20, in = { rate = "10mbit" }, seed = 4 }"#,
    ));
    assert_eq!(
        i.burst,
        Some(Burst {
            enter_ppm: 10_000,
            exit_ppm: 250_000,
            loss_ppm: 1_000_000,
            good_loss_ppm: 0
        })
    );
    assert_eq!(i.corrupt_ppm, 1_000);
    assert_eq!(i.queue, Some(20));
    let inb = i.inbound.as_ref().unwrap();
    assert_eq!(inb.rate_bps, Some(10_000_000));
    assert_eq!(inb.seed, Some(4), "the in direction shares the seed");
    assert_eq!(
        i.summary(),
        "out: burst enter 1% exit 25% loss 100% corrupt 0.1% rate 1mbit queue 20 seed 4; in: rate 10mbit seed 4"
    );
}

#[test]
fn bad_conditions_are_refused_at_their_position() {
    let err = |imp: &str, at: &str| {
        let text = lab(imp);
        let e = parse(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted {imp}"));
        let d = &e.0[0];
        let span = d.span.clone().unwrap();
        assert_eq!(
            &text[span.start..span.start + at.len()],
            at,
            "{}",
            d.message
        );
        d.message.clone()
    };
    let m = err(r#"{ preset = "5g" }"#, "\"5g\"");
    assert!(m.contains("preset `5g` is not known"), "{m}");
    let m = err(r#"{ queue = 10 }"#, "10");
    assert!(
        m.contains("queue is the buffer in front of a rate limit: add rate = \"10mbit\" or so"),
        "{m}"
    );
    let m = err(r#"{ corrupt = "5" }"#, "\"5\"");
    assert!(m.contains("impair corrupt"), "{m}");
    let m = err(r#"{ burst = { enter = "1%", exit = "0%" } }"#, "{");
    assert!(m.contains("burst exit is 0%"), "{m}");
    assert!(m.ends_with("write exit = \"25%\" or so"), "{m}");
    // Advice inside the `in` table is in the file's spelling too.
    let m = err(r#"{ delay = "5ms", in = { reorder = "1%" } }"#, "\"1%\"");
    assert!(m.ends_with("add delay = \"10ms\" or so"), "{m}");
    let m = err(r#"{ in = { delay = "1" } }"#, "\"1\"");
    assert!(m.contains("(in): impair delay"), "{m}");
}
