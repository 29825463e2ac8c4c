//! Stream splitting on arbitrary text: never panics, the untouched documents tile
//! the input byte for byte and carry the line they start on, and every head the fast
//! line scan reads agrees with what the YAML parser reads from the same document.
//! The flow-nesting bound (`guard::check_depth`) refuses a text exactly when the
//! parser's events nest deeper than the limit (or the parser fails before the end).
//! (Built with cfg(fuzzing), stream.rs cuts inputs of 64 bytes and more in halves, as
//! it does streams of 4 MiB and more otherwise.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let (depth, failed) = lockstep::guard::parser_flow_depth(data);
    for limit in [1, 3, 8] {
        match lockstep::guard::check_depth_at(src, limit) {
            Ok(()) => assert!(depth <= limit, "under-count at {limit}: parser nests {depth}"),
            Err(_) => assert!(depth > limit || failed, "over-count at {limit}: parser nests {depth}"),
        }
    }
    let Ok(stream) = lockstep::stream::split(src) else {
        return;
    };
    if !stream.json
        && stream
            .docs
            .iter()
            .all(|d| matches!(d.raw, Cow::Borrowed(_)))
    {
        let joined: String = stream.docs.iter().map(|d| d.raw.as_ref()).collect();
        assert_eq!(joined, src, "raw slices must tile the input");
        for doc in &stream.docs {
            let start = stream.span(doc).expect("a slice of the input").start;
            let line = 1 + src[..start].matches('\n').count();
            assert_eq!(doc.line, line, "the line of the document at byte {start}");
        }
    }
    for doc in &stream.docs {
        let Some(head) = &doc.head else {
            // No head: the document holds nothing (only comments, or null).
            if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&doc.body) {
                assert!(v.is_null(), "document without a head parses as {v:?}");
            }
            continue;
        };
        // Differential: where the parser accepts the document, it must see the same head.
        if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&doc.body) {
            match lockstep::stream::head_of_value(&v) {
                Ok(h) => assert_eq!(&h, head, "fast scan and parser disagree on {:?}", doc.body),
                Err(e) => panic!(
                    "fast scan read {head:?} but the parser says {e:#} for {:?}",
                    doc.body
                ),
            }
        }
        let _ = doc.value();
    }
});
