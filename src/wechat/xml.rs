//! Step one of parsing (STYLE §2): quick-xml into a small raw tree of elements and their text,
//! keeping every field, repeated children included. Typed conversion happens in
//! [`super::message`]. Also the writer helpers every renderer shares.
//!
//! Hardening: any `<!DOCTYPE …>` is refused, so no entity is ever declared or expanded (XXE);
//! only the five predefined entities and character references are resolved; control characters
//! in text are kept as sent; invalid UTF-8 is replaced rather than refused; nesting is capped.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// Deepest nesting accepted. WeChat's deepest message nests 5 levels.
pub const MAX_DEPTH: usize = 32;

/// An element of the raw tree: its name, its text (text and CDATA concatenated, entities
/// resolved) and its child elements in document order. Attributes are ignored: WeChat sends none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// The tag name as sent.
    pub name: String,
    /// The element's own text. For an element with children this is whatever text sat
    /// between them (usually only whitespace).
    pub text: String,
    /// Child elements in document order; repeated names stay repeated.
    pub children: Vec<Element>,
}

/// Why a body is not acceptable XML. Every variant answers HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The body holds no element at all.
    #[error("no root element")]
    Empty,
    /// A `<!DOCTYPE …>` was present. Refused outright: entities are never expanded.
    #[error("a DOCTYPE is not allowed (entity declarations are refused)")]
    Dtd,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An entity other than the five XML predefines, or an invalid character reference.
    #[error("unknown or invalid entity reference &{0};")]
    Entity(String),
    /// Anything after the root element other than whitespace, comments or processing instructions.
    #[error("content after the root element")]
    Trailing,
    /// The document ends inside an element.
    #[error("unexpected end of document inside <{0}>")]
    Unclosed(String),
    /// quick-xml's syntax or well-formedness error.
    #[error("malformed XML: {0}")]
    Syntax(String),
}

impl Element {
    /// A leaf element with text.
    pub fn leaf(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            children: Vec::new(),
        }
    }

    /// An element with children.
    pub fn node(name: impl Into<String>, children: Vec<Element>) -> Self {
        Self {
            name: name.into(),
            text: String::new(),
            children,
        }
    }

    /// The first child named `name`, compared ASCII-case-insensitively (WeChat spells the same
    /// field `MsgId` in one message and `MsgID` in another).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Every child named `name` (ASCII-case-insensitive), in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    /// The text of the first child named `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Renders the element as XML the way WeChat sends it: leaves holding only digits bare,
    /// other text as CDATA split around `]]>`, every character kept (control characters
    /// included).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        out.push('>');
        if self.children.is_empty() {
            let numeric = !self.text.is_empty() && self.text.bytes().all(|b| b.is_ascii_digit());
            if numeric {
                out.push_str(&self.text);
            } else if !self.text.is_empty() {
                push_cdata_verbatim(out, &self.text);
            }
        } else {
            for child in &self.children {
                child.write_to(out);
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Parses a document into its root element. Bytes that are not UTF-8 become U+FFFD: a message
/// truncated mid-character still gets an answer.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let text = String::from_utf8_lossy(input);
    parse_str(&text)
}

/// Parses a document held in a string. See [`parse`].
pub fn parse_str(input: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.trim_text(false);

    // The open elements; the root is stack[0] while it is open.
    let mut stack: Vec<Element> = Vec::with_capacity(8);
    let mut root: Option<Element> = None;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Start(start) => {
                if root.is_some() {
                    return Err(XmlError::Trailing);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = String::from_utf8_lossy(start.name().as_ref().as_bytes()).into_owned();
                stack.push(Element::node(name, Vec::new()));
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err(XmlError::Trailing);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = String::from_utf8_lossy(start.name().as_ref().as_bytes()).into_owned();
                let element = Element::node(name, Vec::new());
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                // check_end_names guarantees the name matches the open element.
                let Some(element) = stack.pop() else {
                    return Err(XmlError::Syntax("unmatched end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                append_text(&mut stack, &root, &content)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&content),
                    None => return Err(XmlError::Syntax("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let resolved: String = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => s.to_owned(),
                        None => return Err(XmlError::Entity(r.chars().take(32).collect())),
                    },
                    Err(_) => return Err(XmlError::Entity(r.chars().take(32).collect())),
                };
                append_text(&mut stack, &root, &resolved)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.pop() {
        return Err(XmlError::Unclosed(open.name));
    }
    root.ok_or(XmlError::Empty)
}

/// Adds text to the open element; outside the root only whitespace is allowed.
fn append_text(
    stack: &mut [Element],
    root: &Option<Element>,
    content: &str,
) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(open) => {
            open.text.push_str(content);
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None if root.is_some() => Err(XmlError::Trailing),
        None => Err(XmlError::Syntax("text before the root element".into())),
    }
}

/// Whether `c` may appear in an XML 1.0 document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `value` without the characters XML 1.0 forbids (U+0002, U+001D, …). Borrowed when clean.
pub fn xml_safe(value: &str) -> Cow<'_, str> {
    if value.chars().all(is_xml_char) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.chars().filter(|&c| is_xml_char(c)).collect())
    }
}

/// Appends `value` as CDATA that any XML parser accepts: characters XML forbids are dropped
/// first, then every `]]>` is split across two sections.
pub fn push_cdata(out: &mut String, value: &str) {
    push_cdata_verbatim(out, &xml_safe(value));
}

/// Appends `value` as CDATA with `]]>` split but every character kept as given, the way WeChat
/// itself sends users' control characters. For the simulator; replies use [`push_cdata`].
pub fn push_cdata_verbatim(out: &mut String, value: &str) {
    out.push_str("<![CDATA[");
    let mut rest = value;
    while let Some(pos) = rest.find("]]>") {
        out.push_str(&rest[..pos + 2]);
        out.push_str("]]><![CDATA[");
        rest = &rest[pos + 2..];
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Appends `<name><![CDATA[value]]></name>`.
pub fn push_cdata_elem(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_cdata(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Appends `<name>value</name>` for a number.
pub fn push_num_elem(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "<{name}>{value}</{name}>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keeps_repeats_and_nesting() {
        let root = parse_str(
            "<?xml version=\"1.0\"?><xml><A>1</A><L><I>x</I></L><L><I>y</I></L><!-- c --><B><![CDATA[a]]>&amp;<![CDATA[b]]></B></xml>",
        )
        .unwrap();
        assert_eq!(root.name, "xml");
        assert_eq!(root.text_of("a"), Some("1"));
        assert_eq!(root.children_named("L").count(), 2);
        assert_eq!(root.text_of("B"), Some("a&b"));
    }

    #[test]
    fn refuses_dtd_and_unknown_entities() {
        assert_eq!(
            parse_str("<!DOCTYPE x [<!ENTITY e \"boom\">]><xml><A>&e;</A></xml>"),
            Err(XmlError::Dtd)
        );
        assert!(matches!(
            parse_str("<xml><A>&e;</A></xml>"),
            Err(XmlError::Entity(_))
        ));
        assert_eq!(
            parse_str("<xml><A>&#x41;&lt;</A></xml>")
                .unwrap()
                .text_of("A"),
            Some("A<")
        );
    }

    #[test]
    fn structural_errors() {
        assert_eq!(parse_str(""), Err(XmlError::Empty));
        assert_eq!(parse_str("  \n"), Err(XmlError::Empty));
        assert!(matches!(
            parse_str("<xml><A>"),
            Err(XmlError::Unclosed(_) | XmlError::Syntax(_))
        ));
        assert!(parse_str("<xml><A></B></xml>").is_err());
        assert_eq!(parse_str("<xml/><xml/>"), Err(XmlError::Trailing));
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse_str(&deep), Err(XmlError::TooDeep));
    }

    #[test]
    fn cdata_is_always_well_formed() {
        let mut out = String::new();
        push_cdata(&mut out, "a]]>b]]>\u{2}c");
        assert_eq!(out, "<![CDATA[a]]]]><![CDATA[>b]]]]><![CDATA[>c]]>");
        let doc = format!("<xml><C>{out}</C></xml>");
        assert_eq!(parse_str(&doc).unwrap().text_of("C"), Some("a]]>b]]>c"));
        // A forbidden character between `]]` and `>` must not leave a terminator behind.
        let mut out = String::new();
        push_cdata(&mut out, "x]]\u{2}>y");
        let doc = format!("<xml><C>{out}</C></xml>");
        assert_eq!(parse_str(&doc).unwrap().text_of("C"), Some("x]]>y"));
    }

    #[test]
    fn control_characters_are_tolerated() {
        let root = parse_str("<xml><C><![CDATA[a\u{2}b\u{1d}]]></C></xml>").unwrap();
        assert_eq!(root.text_of("C"), Some("a\u{2}b\u{1d}"));
    }
}
