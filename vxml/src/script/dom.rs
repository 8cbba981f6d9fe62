//! `<data>` documents (VoiceXML 2.1 §5.1) as the flat node table `dom.js` builds its
//! read-only DOM from.
//!
//! The XML is parsed with roxmltree: well-formedness is checked with positions, internal DTD
//! entities are expanded, and nothing external is fetched. Each node becomes one [`FlatNode`] in
//! document order; an element's attributes follow it. roxmltree merges CDATA sections into the
//! surrounding text, so they appear as Text nodes; namespace declarations (`xmlns`) are not
//! attributes here.

/// Most nodes one `<data>` document may have; a bigger one is refused, not truncated.
const MAX_NODES: u32 = 200_000;

/// The W3C DOM `nodeType` of a node (DOM Level 2 Core §1.2, interface Node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeType {
    /// `ELEMENT_NODE`.
    Element = 1,
    /// `ATTRIBUTE_NODE`.
    Attribute = 2,
    /// `TEXT_NODE` (CDATA sections included).
    Text = 3,
    /// `PROCESSING_INSTRUCTION_NODE`.
    ProcessingInstruction = 7,
    /// `COMMENT_NODE`.
    Comment = 8,
    /// `DOCUMENT_NODE`.
    Document = 9,
}

/// One DOM node, borrowing from the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlatNode<'a> {
    /// What the node is.
    pub(crate) kind: NodeType,
    /// `nodeName`: the qualified name as written (`p:item`), `#text`, `#comment`, `#document`,
    /// or a processing instruction's target.
    pub(crate) name: &'a str,
    /// `namespaceURI`, empty for none.
    pub(crate) namespace: &'a str,
    /// `localName` of elements and attributes, else empty.
    pub(crate) local: &'a str,
    /// Text, comment, attribute value or processing-instruction data; empty otherwise.
    pub(crate) value: &'a str,
    /// Index of the parent (of the owner element for attributes); the document has none.
    pub(crate) parent: Option<u32>,
}

/// Why a `<data>` document could not be turned into a DOM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The document is not well-formed XML.
    #[error("the <data> document is not well-formed XML: {0}; fix the document the server sent")]
    Malformed(String),
}

/// Parses `xml` and hands its nodes, in document order, to `visit`.
pub(crate) fn parse<R>(
    xml: &str,
    visit: impl FnOnce(&[FlatNode<'_>]) -> R,
) -> Result<R, DataError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| DataError::Malformed(e.to_string()))?;
    let mut nodes = Vec::with_capacity(64);
    // roxmltree's descendants are in document order; a node's index is its position here.
    let mut index_of = std::collections::HashMap::new();
    for node in document.root().descendants() {
        let parent = node.parent().and_then(|p| index_of.get(&p.id()).copied());
        let position = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
        index_of.insert(node.id(), position);
        match node.node_type() {
            roxmltree::NodeType::Root => nodes.push(FlatNode {
                kind: NodeType::Document,
                name: "#document",
                namespace: "",
                local: "",
                value: "",
                parent: None,
            }),
            roxmltree::NodeType::Element => {
                nodes.push(FlatNode {
                    kind: NodeType::Element,
                    name: element_qname(xml, &node),
                    namespace: node.tag_name().namespace().unwrap_or(""),
                    local: node.tag_name().name(),
                    value: "",
                    parent,
                });
                for attribute in node.attributes() {
                    nodes.push(FlatNode {
                        kind: NodeType::Attribute,
                        name: xml
                            .get(attribute.range_qname())
                            .unwrap_or_else(|| attribute.name()),
                        namespace: attribute.namespace().unwrap_or(""),
                        local: attribute.name(),
                        value: attribute.value(),
                        parent: Some(position),
                    });
                }
            }
            roxmltree::NodeType::Text => nodes.push(FlatNode {
                kind: NodeType::Text,
                name: "#text",
                namespace: "",
                local: "",
                value: node.text().unwrap_or(""),
                parent,
            }),
            roxmltree::NodeType::Comment => nodes.push(FlatNode {
                kind: NodeType::Comment,
                name: "#comment",
                namespace: "",
                local: "",
                value: node.text().unwrap_or(""),
                parent,
            }),
            roxmltree::NodeType::PI => {
                let pi = node.pi();
                nodes.push(FlatNode {
                    kind: NodeType::ProcessingInstruction,
                    name: pi.map_or("", |pi| pi.target),
                    namespace: "",
                    local: "",
                    value: pi.and_then(|pi| pi.value).unwrap_or(""),
                    parent,
                });
            }
        }
    }
    Ok(visit(&nodes))
}

/// An element's qualified name as written in its start tag (`<p:item ...>` → `p:item`).
fn element_qname<'a>(xml: &'a str, node: &roxmltree::Node<'_, 'a>) -> &'a str {
    let start = node.range().start + 1;
    let rest = xml.get(start..).unwrap_or("");
    let end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    match rest.get(..end) {
        Some(name) if !name.is_empty() => name,
        _ => node.tag_name().name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(xml: &str) -> Vec<(NodeType, String, String, Option<u32>)> {
        parse(xml, |nodes| {
            nodes
                .iter()
                .map(|n| (n.kind, n.name.to_owned(), n.value.to_owned(), n.parent))
                .collect()
        })
        .unwrap()
    }

    #[test]
    fn nodes_come_in_document_order_with_attributes_after_their_element() {
        let nodes = flat("<a x='1'><!--c--><b>t</b><?pi d?></a>");
        let kinds: Vec<_> = nodes.iter().map(|n| (n.0, n.1.as_str(), n.3)).collect();
        assert_eq!(
            kinds,
            [
                (NodeType::Document, "#document", None),
                (NodeType::Element, "a", Some(0)),
                (NodeType::Attribute, "x", Some(1)),
                (NodeType::Comment, "#comment", Some(1)),
                (NodeType::Element, "b", Some(1)),
                (NodeType::Text, "#text", Some(4)),
                (NodeType::ProcessingInstruction, "pi", Some(1)),
            ]
        );
        assert_eq!(nodes[5].2, "t");
        assert_eq!(nodes[6].2, "d");
    }

    #[test]
    fn qualified_names_keep_their_prefix_and_namespace() {
        parse("<p:r xmlns:p='urn:p' p:k='v'><p:i/></p:r>", |nodes| {
            assert_eq!(nodes[1].name, "p:r");
            assert_eq!(nodes[1].local, "r");
            assert_eq!(nodes[1].namespace, "urn:p");
            assert_eq!(nodes[2].name, "p:k");
            assert_eq!(nodes[2].namespace, "urn:p");
            assert_eq!(nodes[3].name, "p:i");
        })
        .unwrap();
    }

    #[test]
    fn malformed_xml_is_an_error_with_a_position() {
        let error = parse("<a><b></a>", |_| ()).unwrap_err();
        assert!(error.to_string().contains("1:"), "{error}");
        assert!(parse("", |_| ()).is_err());
    }

    #[test]
    fn internal_entities_and_cdata_become_text() {
        let nodes = flat("<!DOCTYPE a [<!ENTITY e 'ee'>]><a>&e;<![CDATA[<x>]]></a>");
        let text: String = nodes
            .iter()
            .filter(|n| n.0 == NodeType::Text)
            .map(|n| n.2.as_str())
            .collect();
        assert_eq!(text, "ee<x>");
    }
}
