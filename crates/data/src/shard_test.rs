use super::*;

fn examples() -> Vec<Example> {
    vec![
        Example { input_ids: vec![2, 10, 11, 3, 12, 3], segment_a_len: 4, sop_label: 0 },
        Example { input_ids: vec![2, 300, 3, 7000, 7001, 7002, 3], segment_a_len: 3, sop_label: 1 },
    ]
}

fn write(width: u8) -> (tempfile::TempDir, PathBuf, WrittenShard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shard-00000.bin");
    let mut writer = ShardWriter::new(width).expect("width");
    for ex in examples() {
        writer.push(&ex).expect("push");
    }
    let written = writer.write(&path).expect("write");
    assert!(writer.is_empty(), "writer is cleared");
    (dir, path, written)
}

#[test]
fn round_trips_in_both_widths() {
    for width in [2, 4] {
        let (_dir, path, written) = write(width);
        assert_eq!((written.examples, written.tokens), (2, 13));
        let shard = Shard::open(&path, Some(&written.sha256)).expect("valid shard");
        assert_eq!(shard.len(), 2);
        assert_eq!(shard.example(0).expect("read"), Some(examples()[0].clone()));
        assert_eq!(shard.example(1).expect("read"), Some(examples()[1].clone()));
        assert_eq!(shard.example(2).expect("read"), None);
    }
}

#[test]
fn truncated_altered_and_mismatched_shards_are_named_errors() {
    let (_dir, path, written) = write(2);
    let bytes = std::fs::read(&path).expect("read");

    std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
    let err = Shard::open(&path, None).expect_err("truncated");
    let text = err.to_string();
    assert!(text.contains("shard-00000.bin") && text.contains("truncated"), "{text}");

    let mut altered = bytes.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    std::fs::write(&path, &altered).expect("alter");
    let err = Shard::open(&path, None).expect_err("altered");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    std::fs::write(&path, &bytes).expect("restore");
    let wrong = "0".repeat(64);
    let err = Shard::open(&path, Some(&wrong)).expect_err("manifest mismatch");
    assert!(err.to_string().contains("differs from the manifest"), "{err}");
    assert!(Shard::open(&path, Some(&written.sha256)).is_ok());

    let mut magic = bytes;
    magic[0] = b'X';
    std::fs::write(&path, &magic).expect("magic");
    let err = Shard::open(&path, None).expect_err("magic");
    assert!(err.to_string().contains("bad magic"), "{err}");
}

#[test]
fn ids_too_wide_for_two_bytes_and_bad_widths_are_refused() {
    let wide = Example { input_ids: vec![2, 70_000, 3, 5, 3], segment_a_len: 3, sop_label: 0 };
    let mut narrow = ShardWriter::new(2).expect("width");
    let err = narrow.push(&wide).expect_err("too wide");
    assert!(err.to_string().contains("70000"), "{err}");
    assert!(narrow.is_empty());
    narrow.push(&examples()[0]).expect("a narrow example still fits");
    ShardWriter::new(4).expect("width").push(&wide).expect("fits in 4 bytes");
    assert!(ShardWriter::new(3).is_err());
}
