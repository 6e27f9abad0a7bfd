//! The name files' layout in /etc/netns: each node's entry is a symlink
//! to the lab's directory of name files, one inode per node; a directory
//! someone made there first keeps its own files and gets weft's `hosts`
//! inside.

mod common;

use std::path::{Path, PathBuf};

use common::Lab;

const PAIR: &str = "name = \"x\"\n[nodes.a.interfaces.eth0]\naddresses = [\"10.9.1.1/24\"]\n[nodes.b.interfaces.eth0]\naddresses = [\"10.9.1.2/24\"]\n[[links]]\nendpoints = [\"a:eth0\", \"b:eth0\"]\n";

/// Removes a directory the test made, even when it fails.
struct Made(PathBuf);

impl Drop for Made {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entry(lab: &Lab, node: &str) -> PathBuf {
    Path::new("/etc/netns").join(lab.netns(node))
}

#[test]
fn each_node_links_the_labs_names_and_a_directory_made_first_keeps_its_files() {
    let lab = Lab::from_text("etcdir", PAIR);
    let own = entry(&lab, "a");
    std::fs::create_dir_all(&own).unwrap();
    let _made = Made(own.clone());
    std::fs::write(own.join("resolv.conf"), "nameserver 10.9.1.53\n").unwrap();
    lab.up();
    assert!(own.symlink_metadata().unwrap().is_dir());
    let b = entry(&lab, "b");
    assert!(
        b.symlink_metadata().unwrap().file_type().is_symlink(),
        "{b:?}"
    );
    for (from, to, want) in [("a", "b", "10.9.1.2"), ("b", "a", "10.9.1.1")] {
        let out = lab.ok(&["exec", &lab.name, from, "--", "getent", "ahostsv4", to]);
        assert!(out.starts_with(want), "{from} -> {to}: {out}");
    }
    let resolv = lab.ok(&["exec", &lab.name, "a", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, "nameserver 10.9.1.53\n");
    lab.ok(&["down", &lab.name]);
    assert!(b.symlink_metadata().is_err(), "{b:?} left");
    let left: Vec<String> = std::fs::read_dir(&own)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(left, ["resolv.conf"]);
}
