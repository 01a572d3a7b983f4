use super::*;

#[test]
fn drops_markup_and_keeps_link_text() {
    let text = "{{Infobox person|name=X|born={{birth date|1900|1|1}}}}\n\
'''Ada''' was a [[mathematician|maths person]] from [[London]].<ref name=\"a\">{{cite book|t=x}}</ref> \
She wrote [http://example.com notes] and [http://example.com/bare].<!-- hidden --> \
She liked [[Category:Ignored]] [[File:Ada.jpg|thumb|A [[portrait]] of Ada]]tea.<ref name=b/>\n\
\n\
== Life ==\n\
{| class=\"wikitable\"\n| cell || {{flag|UK}}\n|}\n\
Later life &amp; death&nbsp;came (aged {{age|1|2}}).\n\
* A list item\n\
[[de:Ada Lovelace]]\n\
__NOTOC__";
    let got = wikitext_to_paragraphs(text);
    assert_eq!(
        got,
        vec![
            "Ada was a maths person from London. She wrote notes and. She liked tea.",
            "Later life & death came (aged).",
            "A list item",
        ]
    );
}

#[test]
fn nested_templates_parameters_and_unterminated_markup() {
    assert_eq!(
        wikitext_to_paragraphs("A {{a|{{{1|{{b}}}}}|c}} b. [[Unclosed link"),
        vec!["A b. Unclosed link"]
    );
    assert_eq!(wikitext_to_paragraphs("Text {{never closed\nmore"), vec!["Text"]);
    assert_eq!(
        wikitext_to_paragraphs("<math>x<y</math>If a < b then ''c''."),
        vec!["If a < b then c."]
    );
}
