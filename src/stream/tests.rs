//! Unit tests of the stream: splitting, the head scan against the parser, two threads
//! against one.
use super::*;

fn heads(src: &str) -> Vec<(String, String)> {
    split(src)
        .unwrap()
        .docs
        .iter()
        .filter_map(|d| {
            d.head
                .as_ref()
                .map(|h| (h.kind.to_string(), h.name.to_string()))
        })
        .collect()
}

#[test]
fn raw_slices_tile_the_input() {
    let src = "---\n# Source: a\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# only a comment\n--- # c\napiVersion: v1\nkind: Secret\nmetadata:\n  labels:\n    name: wrong\n  name: \"b\"\n...\n";
    let s = split(src).unwrap();
    let joined: String = s.docs.iter().map(|d| d.raw.as_ref()).collect();
    assert_eq!(joined, src);
    assert_eq!(
        heads(src),
        vec![
            ("ConfigMap".into(), "a".into()),
            ("Secret".into(), "b".into())
        ]
    );
}

#[test]
fn fast_scan_agrees_with_the_parser() {
    let src = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  namespace: 'ns'\n  name: web # c\nspec: {}\n";
    match scan_head(src) {
        Scan::Simple(h) => assert_eq!(
            h,
            head_of_value(&serde_yaml::from_str(src).unwrap()).unwrap()
        ),
        _ => panic!("expected the fast path"),
    }
}

#[test]
fn unusual_documents_take_the_parser() {
    for src in [
        "{\"apiVersion\": v1, kind: ConfigMap, metadata: {name: a}}\n",
        "\"kind\": ConfigMap\napiVersion: v1\nmetadata:\n  name: a\n",
        "kind: ConfigMap\napiVersion: v1\nmetadata: &m\n  name: a\n",
    ] {
        assert!(matches!(scan_head(src), Scan::Complex), "{src}");
        assert_eq!(heads(src), vec![("ConfigMap".into(), "a".into())]);
    }
}

#[test]
fn duplicate_keys_and_missing_kind_are_errors() {
    let dup = "kind: A\nkind: B\napiVersion: v1\nmetadata:\n  name: a\n";
    assert!(format!("{:#}", split(dup).unwrap_err()).contains("duplicate"));
    let nokind = "apiVersion: v1\nmetadata:\n  name: a\n";
    assert!(format!("{:#}", split(nokind).unwrap_err()).contains("no `kind`"));
}

#[test]
fn the_scan_stops_at_the_head() {
    // What follows the head of a document lockstep does not edit is not read...
    let tail = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n- - [not read\n";
    assert!(matches!(scan_head(tail), Scan::Simple(h) if h.name == "a"));
    // ...but a head key again in it (a duplicate, or a key in a block scalar) is
    // for the parser, which reports the duplicate.
    let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {}\nkind: Secret\n";
    assert!(matches!(scan_head(dup), Scan::Complex));
    assert!(format!("{:#}", split(dup).unwrap_err()).contains("duplicate"));
    let text =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: |\nkind: Secret\n";
    assert!(matches!(scan_head(text), Scan::Complex));
    // A key of metadata other than name and namespace is not read; a line that
    // could continue the name's scalar is.
    let cont = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  b\ndata: {}\n";
    assert!(matches!(scan_head(cont), Scan::Complex));
}

#[test]
fn large_streams_split_on_two_threads_like_one() {
    let doc = |i: usize| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: {}\n",
            "v".repeat(200)
        )
    };
    let mut src: String = (0..30_000).map(doc).collect();
    assert!(src.len() > PARALLEL_MIN_BYTES);
    let heads = heads(&src);
    assert_eq!(heads.len(), 30_000);
    assert!(heads
        .iter()
        .enumerate()
        .all(|(i, (_, n))| *n == format!("c{i}")));
    // The first error in document order is the one reported, from either half.
    let bad = |s: &mut String, at: usize| {
        let p = s.match_indices("---\n").nth(at).unwrap().0;
        s.insert_str(p, "---\nkind: [unclosed\n");
    };
    // Split in halves, the documents are those of one pass, line numbers included;
    // near the cut, lines that only look like markers and `...` ends.
    let mid = src.len() / 2;
    let cut = mid + src[mid..].find("---\n").unwrap();
    src.insert_str(cut, "---x\n# not a marker\n...\n");
    let halves = split(&src).unwrap();
    let one = read_heads(&split_yaml(&src, 1)).unwrap();
    assert_eq!(halves.docs.len(), one.len());
    for (a, b) in halves.docs.iter().zip(&one) {
        assert_eq!(
            (&a.raw, &a.body, a.line, &a.head),
            (&b.raw, &b.body, b.line, &b.head)
        );
    }
    bad(&mut src, 25_000);
    let late = format!("{:#}", split(&src).unwrap_err());
    assert!(
        late.contains(&format!("line {}", 25_000 * 7 + 3 + 1)),
        "{late}"
    );
    bad(&mut src, 100);
    let early = format!("{:#}", split(&src).unwrap_err());
    assert!(late.contains("malformed YAML") && early.contains("malformed YAML"));
    assert_ne!(late, early, "the earlier error wins");
    assert!(early.contains(&format!("line {}", 100 * 7 + 1)), "{early}");
}

#[test]
fn json_stream_and_lists() {
    let src = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}\n{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"s\"}}]}";
    let s = split(src).unwrap();
    assert!(s.json);
    assert_eq!(
        heads(src),
        vec![
            ("ConfigMap".into(), "a".into()),
            ("Secret".into(), "s".into())
        ]
    );
}

#[test]
fn empty_input_is_an_error() {
    for src in ["", "\n\n", "---\n# nothing\n---\n"] {
        assert!(format!("{:#}", split(src).unwrap_err()).contains("empty"));
    }
}
