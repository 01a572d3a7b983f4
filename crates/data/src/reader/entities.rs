//! Decoding of HTML character references (`&amp;`, `&nbsp;`, `&#8211;`, `&#x2013;`), as they
//! appear in wikitext and in WikiExtractor's HTML-escaped output.

/// Named references common in Wikipedia text, with their characters.
const NAMED: &[(&str, &str)] = &[
    ("amp", "&"),
    ("lt", "<"),
    ("gt", ">"),
    ("quot", "\""),
    ("apos", "'"),
    ("nbsp", " "),
    ("ndash", "\u{2013}"),
    ("mdash", "\u{2014}"),
    ("minus", "\u{2212}"),
    ("hellip", "\u{2026}"),
    ("times", "\u{00D7}"),
    ("deg", "\u{00B0}"),
    ("lsquo", "\u{2018}"),
    ("rsquo", "\u{2019}"),
    ("ldquo", "\u{201C}"),
    ("rdquo", "\u{201D}"),
    ("middot", "\u{00B7}"),
    ("thinsp", " "),
    ("ensp", " "),
    ("emsp", " "),
    ("zwj", ""),
    ("zwnj", ""),
    ("shy", ""),
    ("frac12", "\u{00BD}"),
    ("pound", "\u{00A3}"),
    ("euro", "\u{20AC}"),
    ("copy", "\u{00A9}"),
    ("prime", "\u{2032}"),
    ("Prime", "\u{2033}"),
];

/// Replaces character references; unknown or malformed ones are left as they are.
pub fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let window = &rest.as_bytes()[1..rest.len().min(12)];
        let decoded = window
            .iter()
            .position(|b| *b == b';')
            .and_then(|end| decode_one(&rest[1..1 + end]).map(|c| (c, end + 2)));
        match decoded {
            Some((replacement, consumed)) => {
                out.push_str(&replacement);
                rest = &rest[consumed..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_one(name: &str) -> Option<String> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0').map(String::from);
    }
    NAMED.iter().find(|(n, _)| *n == name).map(|(_, c)| (*c).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_named_and_numeric_and_keeps_unknown() {
        assert_eq!(decode_entities("AT&amp;T"), "AT&T");
        assert_eq!(decode_entities("&amp;été&nbsp;"), "&été ");
        assert_eq!(decode_entities("1&ndash;2 &#8212; &#x41;"), "1\u{2013}2 \u{2014} A");
        assert_eq!(decode_entities("a & b &bogus; &#0; &"), "a & b &bogus; &#0; &");
    }
}
