//! How long a document's text becomes once its internal entities are expanded, measured before
//! the XML parser expands them.
//!
//! The XML parser expands `<!ENTITY name "value">` references itself, into text it allocates:
//! a 62 KB document whose one entity is referenced 4,000 times parses to about 200 MB, and the
//! classic "billion laughs" (nested entities) to gigabytes. So the text is measured first: each
//! entity's expanded length (recursively, memoised, so nesting costs nothing to measure), times
//! its references. A document whose expansion would pass the limit is refused before the parser
//! sees it; the measured length is also what the parsed model holds copies of, which the
//! document cache charges for it.
//!
//! The measure is conservative: a reference inside a comment or CDATA section (which the parser
//! does not expand) is counted as if it were expanded.

use std::collections::HashMap;

/// Deepest nesting of entity references measured; deeper is treated as past any limit (the
/// parser refuses reference loops anyway).
const MAX_DEPTH: u32 = 32;

/// The length of `text` once its internal entities are expanded, or `Err` with a lower bound
/// once that passes `limit`.
pub(crate) fn expanded_len(text: &str, limit: u64) -> Result<u64, u64> {
    let Some((entities, body_from)) = internal_entities(text) else {
        return Ok(text.len() as u64);
    };
    if entities.is_empty() {
        return Ok(text.len() as u64);
    }
    let mut measure = Measure {
        entities,
        memo: HashMap::new(),
        limit,
    };
    let mut total = text.len() as u64;
    for (name, reference_len) in references(&text[body_from..]) {
        let Some(len) = measure.entity(name, 0) else {
            continue;
        };
        total = total.saturating_add(len).saturating_sub(reference_len);
        if total > limit {
            return Err(total);
        }
    }
    Ok(total)
}

struct Measure<'t> {
    entities: HashMap<&'t str, &'t str>,
    memo: HashMap<&'t str, u64>,
    limit: u64,
}

impl<'t> Measure<'t> {
    /// The expanded length of entity `name` (`None` if it is not an internal entity); past the
    /// limit, `limit + 1`.
    fn entity(&mut self, name: &'t str, depth: u32) -> Option<u64> {
        let value = *self.entities.get(name)?;
        if let Some(len) = self.memo.get(name) {
            return Some(*len);
        }
        let past = self.limit.saturating_add(1);
        let len = if depth >= MAX_DEPTH {
            past
        } else {
            let mut len = value.len() as u64;
            for (inner, reference_len) in references(value) {
                if let Some(inner_len) = self.entity(inner, depth + 1) {
                    len = len.saturating_add(inner_len).saturating_sub(reference_len);
                }
                if len > self.limit {
                    len = past;
                    break;
                }
            }
            len
        };
        self.memo.insert(name, len);
        Some(len)
    }
}

/// Every `&name;` in `text`: the name and the reference's length in bytes.
fn references(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.match_indices('&').filter_map(move |(at, _)| {
        let rest = &text[at + 1..];
        let end =
            rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))?;
        (end > 0 && rest[end..].starts_with(';')).then(|| (&rest[..end], end as u64 + 2))
    })
}

/// The internal DTD subset's general entities with a literal value, and the offset where the
/// document after the subset starts; `None` without an internal subset.
fn internal_entities(text: &str) -> Option<(HashMap<&str, &str>, usize)> {
    let doctype = text.find("<!DOCTYPE")?;
    let bytes = text.as_bytes();
    let mut at = doctype + "<!DOCTYPE".len();
    // Up to the subset's `[` (quoted system and public ids may hold anything).
    loop {
        match *bytes.get(at)? {
            quote @ (b'"' | b'\'') => at += 1 + text[at + 1..].find(char::from(quote))? + 1,
            b'[' => break,
            b'>' => return None,
            _ => at += 1,
        }
    }
    at += 1;
    let mut entities = HashMap::new();
    loop {
        match *bytes.get(at)? {
            b']' => return Some((entities, at + 1)),
            quote @ (b'"' | b'\'') => at += 1 + text[at + 1..].find(char::from(quote))? + 1,
            b'<' if text[at..].starts_with("<!--") => at += text[at..].find("-->")? + 3,
            b'<' if text[at..].starts_with("<!ENTITY") => {
                at += "<!ENTITY".len();
                let rest = text[at..].trim_start();
                at = text.len() - rest.len();
                if rest.starts_with('%') {
                    continue;
                }
                let name_end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == '\'')?;
                let name = &rest[..name_end];
                let after = rest[name_end..].trim_start();
                at = text.len() - after.len();
                if let Some(quote) = after.chars().next().filter(|c| matches!(c, '"' | '\'')) {
                    let value_end = after[1..].find(quote)?;
                    entities
                        .entry(name)
                        .or_insert_with(|| &after[1..1 + value_end]);
                    at += 1 + value_end + 1;
                }
            }
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_entities_is_its_own_length() {
        let text = "<vxml><form><block>a &amp; b</block></form></vxml>";
        assert_eq!(expanded_len(text, 1000), Ok(text.len() as u64));
        let doctype = "<!DOCTYPE vxml SYSTEM \"x[\"><vxml>&amp;</vxml>";
        assert_eq!(expanded_len(doctype, 1000), Ok(doctype.len() as u64));
    }

    #[test]
    fn references_count_their_expansion_nested_ones_too() {
        let text = "<!DOCTYPE v [<!ENTITY a \"xyz\"><!ENTITY b '&a;&a;'>]><v>&a;&b;&unknown;</v>";
        // &a; adds 3 - 3, &b; adds 6 - 3; the unknown reference is text.
        assert_eq!(expanded_len(text, 10_000), Ok(text.len() as u64 + 3));
    }

    #[test]
    fn bombs_pass_the_limit_without_being_expanded() {
        let mut levels = String::from("<!ENTITY l0 \"lol\">");
        for i in 1..40 {
            levels.push_str(&format!(
                "<!ENTITY l{i} \"{}\">",
                format!("&l{};", i - 1).repeat(10)
            ));
        }
        let laughs = format!("<!DOCTYPE v [{levels}]><v>&l39;</v>");
        assert!(expanded_len(&laughs, 1 << 20).is_err());
        let wide = format!(
            "<!DOCTYPE v [<!ENTITY e \"{}\">]><v>{}</v>",
            "a".repeat(50_000),
            "&e;".repeat(4_000)
        );
        assert_eq!(
            expanded_len(&wide, 1 << 20).map_err(|past| past > 1 << 20),
            Err(true)
        );
        assert!(expanded_len(&wide, 1 << 30).is_ok_and(|len| len > 200_000_000));
    }

    #[test]
    fn a_reference_loop_is_past_any_limit() {
        let text = "<!DOCTYPE v [<!ENTITY a \"&b;\"><!ENTITY b \"&a;\">]><v>&a;</v>";
        assert!(expanded_len(text, 1 << 20).is_err());
    }
}
