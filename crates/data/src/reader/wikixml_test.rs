use super::*;
use crate::input;
use crate::test_support::fixture;
use std::io::Cursor;

fn read_str(xml: &str) -> Result<Vec<Document>> {
    WikiXmlReader::new(Cursor::new(xml.as_bytes().to_vec()), Path::new("dump.xml"))?
        .documents()
        .collect()
}

const PAGES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<mediawiki><siteinfo><sitename>W</sitename></siteinfo>
<page><title>Redirected</title><ns>0</ns><id>1</id><redirect title="X" />
<revision><id>9</id><text xml:space="preserve">#REDIRECT [[X]]</text></revision></page>
<page><title>Talk:Thing</title><ns>1</ns><id>2</id>
<revision><id>10</id><text>Talk text here.</text></revision></page>
<page><title>Thing</title><ns>0</ns><id>3</id>
<revision><id>11</id><text>A '''thing''' &amp; [[other thing|another]].&lt;ref&gt;x&lt;/ref&gt; Second sentence.
== Heading ==
New paragraph &#233;t&#xE9;.</text></revision></page>
</mediawiki>"#;

#[test]
fn keeps_articles_only_and_cleans_them() {
    let docs = read_str(PAGES).expect("valid dump");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].id, "3");
    assert_eq!(docs[0].title.as_deref(), Some("Thing"));
    assert_eq!(
        docs[0].sentences,
        vec!["A thing & another.", "Second sentence.", "New paragraph été."]
    );
}

#[test]
fn foreign_encodings_and_truncation_are_errors() {
    let latin = PAGES.replace("UTF-8", "ISO-8859-1");
    let err = read_str(&latin).expect_err("latin-1 is refused");
    assert!(err.to_string().contains("ISO-8859-1"), "{err}");

    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(PAGES.encode_utf16().flat_map(u16::to_le_bytes));
    let err = WikiXmlReader::new(Cursor::new(utf16), Path::new("d.xml")).expect_err("utf-16");
    assert!(err.to_string().contains("UTF-16LE"), "{err}");

    let mut bad = PAGES.as_bytes().to_vec();
    let at = PAGES.find("Second").expect("marker");
    bad[at] = 0xFF;
    let err = WikiXmlReader::new(Cursor::new(bad), Path::new("d.xml"))
        .expect("header fine")
        .documents()
        .collect::<Result<Vec<_>>>()
        .expect_err("invalid utf-8");
    assert!(matches!(err, DataError::Encoding { .. }), "{err}");

    let cut = &PAGES[..PAGES.find("== Heading").expect("marker")];
    let err = read_str(cut).expect_err("truncated");
    assert!(err.to_string().contains("dump.xml"), "{err}");
}

#[test]
fn real_dump_sample_gives_clean_articles() {
    let path = fixture("enwiki-sample.xml.bz2");
    let docs = WikiXmlReader::new(input::open(&path).expect("open"), &path)
        .expect("header")
        .documents()
        .collect::<Result<Vec<_>>>()
        .expect("the sample dump reads");
    // 206 pages: one outside namespace 0 and 100 redirects; WikiExtractor also keeps 106.
    assert_eq!(docs.len(), 106, "articles");
    let jsonl = fixture("enwiki-sample.wikiextractor.jsonl");
    let extracted = crate::reader::jsonl::JsonlReader::new(
        input::open(&jsonl).expect("open"),
        &jsonl,
        crate::reader::JsonFields::default(),
    )
    .documents()
    .collect::<Result<Vec<_>>>()
    .expect("jsonl fixture");
    for (ours, theirs) in docs.iter().zip(&extracted) {
        assert_eq!((&ours.id, &ours.title), (&theirs.id, &theirs.title), "same articles in order");
    }
    assert_eq!(docs[0].title.as_deref(), Some("Anarchism"));
    assert_eq!(docs[0].id, "12");
    assert!(docs[0].sentences[0].starts_with("Anarchism is a political philosophy"));
    for doc in &docs {
        for sentence in &doc.sentences {
            for marker in ["{{", "}}", "[[", "]]", "<ref", "|}", "{|", "<!--"] {
                assert!(!sentence.contains(marker), "{marker} left in {:?}: {sentence}", doc.title);
            }
        }
    }
    let sentences: usize = docs.iter().map(|d| d.sentences.len()).sum();
    assert!(sentences > 10_000, "{sentences} sentences");
}

#[test]
fn truncated_bz2_is_an_io_error_naming_the_file() {
    let bytes = std::fs::read(fixture("enwiki-sample.xml.bz2")).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.xml.bz2");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    let result: Result<Vec<Document>> =
        WikiXmlReader::new(input::open(&path).expect("open"), &path)
            .and_then(|reader| reader.documents().collect());
    let err = result.expect_err("truncated bz2");
    assert!(err.to_string().contains("cut.xml.bz2"), "{err}");
}

#[test]
fn multistream_bz2_reads_every_stream() {
    use std::io::Write;
    // Wikipedia's multistream dumps are bzip2 streams concatenated (header, 100 pages each,
    // footer); here the split is mid-document as well.
    let split = PAGES.find("<page><title>Thing").expect("marker");
    let mut bytes = Vec::new();
    for part in [&PAGES[..split], &PAGES[split..]] {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        encoder.write_all(part.as_bytes()).expect("compress");
        bytes.extend(encoder.finish().expect("finish"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("multistream.xml.bz2");
    std::fs::write(&path, bytes).expect("write");
    let docs = WikiXmlReader::new(input::open(&path).expect("open"), &path)
        .expect("header")
        .documents()
        .collect::<Result<Vec<_>>>()
        .expect("both streams");
    assert_eq!(docs, read_str(PAGES).expect("plain"));
}
