use super::*;
use crate::test_support::fixture;
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// Writes a parquet file of required UTF-8 columns, one row group, like Hugging Face layouts.
fn write_parquet(path: &Path, columns: &[(&str, Vec<&str>)]) {
    write_parquet_compressed(path, columns, Compression::UNCOMPRESSED);
}

fn write_parquet_compressed(path: &Path, columns: &[(&str, Vec<&str>)], codec: Compression) {
    let fields: String =
        columns.iter().map(|(name, _)| format!("REQUIRED BYTE_ARRAY {name} (UTF8); ")).collect();
    let schema =
        Arc::new(parse_message_type(&format!("message schema {{ {fields}}}")).expect("schema"));
    let file = File::create(path).expect("create");
    let props = Arc::new(WriterProperties::builder().set_compression(codec).build());
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let mut group = writer.next_row_group().expect("row group");
    for (_, values) in columns {
        let mut column = group.next_column().expect("column").expect("one per field");
        let values: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(*v)).collect();
        column.typed::<ByteArrayType>().write_batch(&values, None, None).expect("write");
        column.close().expect("close column");
    }
    group.close().expect("close group");
    writer.close().expect("close file");
}

fn read(path: &Path, fields: &JsonFields, max: usize) -> Result<Vec<Document>> {
    ParquetReader::open(path, fields, max)?.documents().collect()
}

#[test]
fn wikimedia_layout_sample_reads_one_article_per_row() {
    let docs = read(&fixture("enwiki-sample.wikimedia.parquet"), &JsonFields::default(), 100)
        .expect("sample parquet");
    assert_eq!(docs.len(), 106);
    assert_eq!(docs[0].id, "12");
    assert_eq!(docs[0].title.as_deref(), Some("Anarchism"));
    assert!(docs[0].sentences[0].starts_with("Anarchism is a political philosophy"));
    assert!(docs.iter().all(|d| d.sentences.iter().all(|s| !s.contains('\n'))));
}

#[test]
fn bookcorpus_and_bookcorpusopen_layouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sentences = dir.path().join("bookcorpus.parquet");
    write_parquet(&sentences, &[("text", vec!["first sentence .", "second one .", "", "third ."])]);
    let docs = read(&sentences, &JsonFields::default(), 2).expect("bookcorpus");
    let got: Vec<Vec<String>> = docs.into_iter().map(|d| d.sentences).collect();
    assert_eq!(got, vec![vec!["first sentence .", "second one ."], vec!["third ."]]);

    let books = dir.path().join("bookcorpusopen.parquet");
    write_parquet(
        &books,
        &[
            ("title", vec!["a-tale.epub.txt", "empty.epub.txt"]),
            ("text", vec!["It began. It ended.\n\nThe end.", "  "]),
        ],
    );
    let docs = read(&books, &JsonFields::default(), 100).expect("bookcorpusopen");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].title.as_deref(), Some("a-tale.epub.txt"));
    assert_eq!(docs[0].sentences, vec!["It began.", "It ended.", "The end."]);
}

/// Hugging Face publishes snappy; other tools write zstd, gzip, brotli or lz4: all are read.
#[test]
fn every_common_codec_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let codecs = [
        Compression::SNAPPY,
        Compression::ZSTD(ZstdLevel::default()),
        Compression::GZIP(GzipLevel::default()),
        Compression::BROTLI(BrotliLevel::default()),
        Compression::LZ4_RAW,
    ];
    for codec in codecs {
        let path = dir.path().join(format!("{codec}.parquet"));
        let text = "Compressed columns are read. Whatever the codec.";
        write_parquet_compressed(&path, &[("title", vec!["T"]), ("text", vec![text])], codec);
        let docs = read(&path, &JsonFields::default(), 100).expect("compressed parquet");
        assert_eq!(docs.len(), 1, "{codec}");
        assert_eq!(docs[0].sentences, vec!["Compressed columns are read.", "Whatever the codec."]);
    }
}

#[test]
fn missing_text_column_lists_the_columns() {
    let fields = JsonFields { text: "content".to_owned(), ..JsonFields::default() };
    let err = read(&fixture("enwiki-sample.wikimedia.parquet"), &fields, 100)
        .expect_err("no such column");
    let text = err.to_string();
    assert!(matches!(err, DataError::MissingColumn { .. }), "{text}");
    assert!(text.contains("\"content\"") && text.contains("\"url\""), "{text}");
    assert!(text.contains("enwiki-sample.wikimedia.parquet"), "{text}");
}
