//! Every reader on the real samples in `tests/fixtures`, sniffing, and the corpus-level errors.

use super::*;
use crate::test_support::fixture;

fn read(name: &str, format: Format) -> Vec<Document> {
    read_all(&[&fixture(name)], format, &ReaderOptions::default()).expect("sample reads")
}

#[test]
fn sniffing_recognises_every_sample() {
    for (name, expected) in [
        ("enwiki-sample.xml.bz2", Format::WikiXml),
        ("enwiki-sample.wikiextractor.doc.txt", Format::WikiExtractor),
        ("enwiki-sample.wikiextractor.jsonl", Format::WikiExtractorJson),
        ("persuasion.txt", Format::Book),
    ] {
        assert_eq!(sniff_format(&fixture(name)).expect("sniff"), expected, "{name}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bert = dir.path().join("bert.txt");
    std::fs::write(&bert, "First sentence.\nSecond one!\n\nNext document.\n").expect("write");
    assert_eq!(sniff_format(&bert).expect("sniff"), Format::Text);
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, "{\"body\": \"x\"}\n").expect("write");
    assert_eq!(sniff_format(&other).expect("sniff"), Format::Jsonl);
    let parquet = dir.path().join("x.parquet");
    std::fs::write(&parquet, b"PAR1\x00\x00").expect("write");
    assert_eq!(sniff_format(&parquet).expect("sniff"), Format::Parquet);
    let err = read_documents(&parquet, Format::Auto, &ReaderOptions::default())
        .err()
        .expect("not a real parquet file");
    assert!(err.to_string().contains("x.parquet"), "{err}");
    assert_eq!(
        sniff_format(&fixture("enwiki-sample.wikimedia.parquet")).expect("sniff"),
        Format::Parquet
    );
}

#[test]
fn wikiextractor_forms_agree_on_titles_and_text() {
    let docs = read("enwiki-sample.wikiextractor.doc.txt", Format::Auto);
    assert_eq!(docs.len(), 10);
    let json = read("enwiki-sample.wikiextractor.jsonl", Format::Auto);
    assert_eq!(json.len(), 12);
    for (a, b) in docs.iter().zip(&json) {
        assert_eq!((&a.id, &a.title), (&b.id, &b.title));
        assert_eq!(a.sentences, b.sentences, "{:?}", a.title);
    }
    assert_eq!(docs[0].title.as_deref(), Some("Anarchism"));
    assert!(docs[0].sentences[0].starts_with("Anarchism is a political philosophy"));
    assert!(docs.iter().flat_map(|d| &d.sentences).all(|s| !s.contains("&amp;")));
    assert!(docs.iter().flat_map(|d| &d.sentences).any(|s| s.contains("AT&T")));
}

#[test]
fn book_sample_is_one_document_of_prose() {
    let docs = read("persuasion.txt", Format::Auto);
    assert_eq!(docs.len(), 1);
    let sentences = &docs[0].sentences;
    assert!(sentences.len() > 3000, "{}", sentences.len());
    assert!(sentences.iter().any(|s| s.starts_with(
        "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who, for his own amusement"
    )));
    assert!(sentences.iter().all(|s| !s.contains('\n') && !s.contains("  ")));
}

#[test]
fn empty_corpus_unknown_format_and_non_utf8_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "\n\n  \n").expect("write");
    let err = read_all(&[&blank], Format::Text, &ReaderOptions::default()).expect_err("empty");
    assert!(matches!(err, DataError::EmptyCorpus { .. }), "{err}");
    assert!(err.to_string().contains("blank.txt"), "{err}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let err = sniff_format(&empty).expect_err("nothing to sniff");
    assert!(err.to_string().contains("empty.txt"), "{err}");

    let html = dir.path().join("page.html");
    std::fs::write(&html, "<html><body>hi</body></html>").expect("write");
    let err = sniff_format(&html).expect_err("html");
    assert!(matches!(err, DataError::UnknownFormat { .. }), "{err}");

    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"Caf\xE9 au lait.\n").expect("write");
    let err = sniff_format(&latin1).expect_err("latin-1");
    assert!(err.to_string().contains("latin1.txt"), "{err}");
    let err = read_all(&[&latin1], Format::Text, &ReaderOptions::default()).expect_err("latin-1");
    assert!(matches!(err, DataError::Encoding { .. }), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
}
