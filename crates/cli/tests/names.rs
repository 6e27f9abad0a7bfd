//! Namespace names through the real binary: two labs whose names used to
//! give the same namespace are both built.

mod common;
use common::Lab;

#[test]
fn lab_a_x_node_y_and_lab_a_node_x_y_are_both_built() {
    let a = Lab::from_text(
        "a",
        "name = \"x\"\n[nodes.x-y.interfaces.t]\nkind = \"tap\"\n",
    );
    // Lab `A-x` with node `y`: with `-` between lab and node both were
    // `weft-A-x-y`, and the second `up` was refused.
    let text = "name = \"x\"\n[nodes.y.interfaces.t]\nkind = \"tap\"\n";
    let made = Lab::from_text("a", text);
    std::fs::write(
        &made.file,
        format!("name = \"{}-x\"\n{}", a.name, &text[11..]),
    )
    .unwrap();
    let ax = Lab {
        name: format!("{}-x", a.name),
        file: made.file.clone(),
        state: made.state.clone(),
    };
    // `ax` takes over the directory and the cleanup of the lab made there.
    std::mem::forget(made);
    a.up();
    ax.up();
    let (mine, theirs) = (a.netns("x-y"), ax.netns("y"));
    assert_ne!(mine, theirs);
    let list = String::from_utf8(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(list.contains(&mine) && list.contains(&theirs), "{list}");
    assert_eq!(a.namespaces(), [mine]);
    assert_eq!(ax.namespaces(), [theirs]);
}
