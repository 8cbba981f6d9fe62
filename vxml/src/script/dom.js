// A read-only W3C DOM Level 2 Core subset for <data> (VoiceXML 2.1 §5.1), evaluated once per
// context, on the first <data>. `__vxml.dom(flat)` turns the Rust side's flat node table
// (6 slots per node, document order: type, qualified name, namespace URI, local name, value,
// parent index; attributes follow their element) into a frozen Document.
(function (api) {
  'use strict';
  const R = Symbol('node');
  const rec = function (node) { return node[R]; };
  const NodeListProto = Object.create(Array.prototype);
  NodeListProto.item = function (i) {
    const n = Number(i);
    return n >= 0 && n < this.length ? this[Math.floor(n)] : null;
  };
  const NamedNodeMapProto = Object.create(NodeListProto);
  NamedNodeMapProto.getNamedItem = function (name) {
    for (let i = 0; i < this.length; i++) if (rec(this[i]).n === name) return this[i];
    return null;
  };
  NamedNodeMapProto.getNamedItemNS = function (ns, local) {
    for (let i = 0; i < this.length; i++) {
      const r = rec(this[i]);
      if (r.ns === (ns || null) && r.l === local) return this[i];
    }
    return null;
  };
  const freezeList = function (items, proto) {
    Object.setPrototypeOf(items, proto);
    return Object.freeze(items);
  };
  const getters = function (proto, table) {
    for (const key of Object.keys(table)) {
      Object.defineProperty(proto, key, { get: table[key], enumerable: true, configurable: true });
    }
  };
  // Descendant elements of `root` in document order (iterative: no recursion limit).
  const descendants = function (root, match) {
    const out = [];
    const todo = rec(root).kids.slice().reverse();
    while (todo.length > 0) {
      const node = todo.pop();
      const r = rec(node);
      if (r.t === 1) {
        if (match(r)) out.push(node);
        for (let i = r.kids.length - 1; i >= 0; i--) todo.push(r.kids[i]);
      }
    }
    return freezeList(out, NodeListProto);
  };
  const byTagName = function (name) {
    const wanted = String(name);
    return descendants(this, function (r) { return wanted === '*' || r.n === wanted; });
  };
  const byTagNameNS = function (ns, local) {
    const wantedNs = ns === null || ns === undefined ? null : String(ns);
    const wantedLocal = String(local);
    return descendants(this, function (r) {
      return (wantedNs === '*' || r.ns === wantedNs) && (wantedLocal === '*' || r.l === wantedLocal);
    });
  };
  // The concatenated text of `node`'s Text descendants (DOM Level 3 textContent).
  const textOf = function (node) {
    const r = rec(node);
    if (r.t !== 1) return r.v;
    let s = '';
    const todo = [node];
    while (todo.length > 0) {
      const k = rec(todo.pop());
      if (k.t === 3) s += k.v;
      else if (k.t === 1) for (let i = k.kids.length - 1; i >= 0; i--) todo.push(k.kids[i]);
    }
    return s;
  };

  const NodeProto = {};
  const TYPES = ['ELEMENT_NODE', 'ATTRIBUTE_NODE', 'TEXT_NODE', 'CDATA_SECTION_NODE',
    'ENTITY_REFERENCE_NODE', 'ENTITY_NODE', 'PROCESSING_INSTRUCTION_NODE', 'COMMENT_NODE',
    'DOCUMENT_NODE', 'DOCUMENT_TYPE_NODE', 'DOCUMENT_FRAGMENT_NODE', 'NOTATION_NODE'];
  for (let i = 0; i < TYPES.length; i++) Object.defineProperty(NodeProto, TYPES[i], { value: i + 1 });
  getters(NodeProto, {
    nodeType() { return rec(this).t; },
    nodeName() { return rec(this).n; },
    nodeValue() { const r = rec(this); return r.t === 1 || r.t === 9 ? null : r.v; },
    parentNode() { return rec(this).parent; },
    childNodes() { return rec(this).kids; },
    firstChild() { const k = rec(this).kids; return k.length > 0 ? k[0] : null; },
    lastChild() { const k = rec(this).kids; return k.length > 0 ? k[k.length - 1] : null; },
    previousSibling() {
      const r = rec(this);
      return r.parent === null || r.i === 0 ? null : rec(r.parent).kids[r.i - 1];
    },
    nextSibling() {
      const r = rec(this);
      if (r.parent === null) return null;
      const k = rec(r.parent).kids;
      return r.i + 1 < k.length ? k[r.i + 1] : null;
    },
    attributes() { return rec(this).attrs; },
    ownerDocument() { return rec(this).doc; },
    namespaceURI() { return rec(this).ns; },
    prefix() { const n = rec(this).n; const c = n.indexOf(':'); return c > 0 && rec(this).ns !== null ? n.slice(0, c) : null; },
    localName() { const r = rec(this); return r.t === 1 || r.t === 2 ? r.l : null; },
    textContent() { return rec(this).t === 9 ? null : textOf(this); },
  });
  NodeProto.hasChildNodes = function () { return rec(this).kids.length > 0; };
  NodeProto.hasAttributes = function () { const a = rec(this).attrs; return a !== null && a.length > 0; };

  const DocumentProto = Object.create(NodeProto);
  getters(DocumentProto, {
    documentElement() {
      const k = rec(this).kids;
      for (let i = 0; i < k.length; i++) if (rec(k[i]).t === 1) return k[i];
      return null;
    },
  });
  DocumentProto.getElementsByTagName = byTagName;
  DocumentProto.getElementsByTagNameNS = byTagNameNS;

  const ElementProto = Object.create(NodeProto);
  const attrNode = function (el, name) { return rec(el).attrs.getNamedItem(String(name)); };
  const attrNodeNS = function (el, ns, local) {
    return rec(el).attrs.getNamedItemNS(ns === undefined ? null : ns, String(local));
  };
  getters(ElementProto, { tagName() { return rec(this).n; } });
  ElementProto.getAttribute = function (name) { const a = attrNode(this, name); return a === null ? '' : rec(a).v; };
  ElementProto.getAttributeNS = function (ns, local) { const a = attrNodeNS(this, ns, local); return a === null ? '' : rec(a).v; };
  ElementProto.getAttributeNode = function (name) { return attrNode(this, name); };
  ElementProto.getAttributeNodeNS = function (ns, local) { return attrNodeNS(this, ns, local); };
  ElementProto.hasAttribute = function (name) { return attrNode(this, name) !== null; };
  ElementProto.hasAttributeNS = function (ns, local) { return attrNodeNS(this, ns, local) !== null; };
  ElementProto.getElementsByTagName = byTagName;
  ElementProto.getElementsByTagNameNS = byTagNameNS;

  const AttrProto = Object.create(NodeProto);
  getters(AttrProto, {
    name() { return rec(this).n; },
    value() { return rec(this).v; },
    ownerElement() { return rec(this).owner; },
    specified() { return true; },
  });

  const CharacterDataProto = Object.create(NodeProto);
  getters(CharacterDataProto, {
    data() { return rec(this).v; },
    length() { return rec(this).v.length; },
  });
  CharacterDataProto.substringData = function (offset, count) {
    return rec(this).v.substr(offset, count);
  };
  const TextProto = Object.create(CharacterDataProto);
  const CommentProto = Object.create(CharacterDataProto);
  const PIProto = Object.create(NodeProto);
  getters(PIProto, {
    target() { return rec(this).n; },
    data() { return rec(this).v; },
  });

  const PROTOS = [null, ElementProto, AttrProto, TextProto, TextProto, null, null, PIProto,
    CommentProto, DocumentProto];
  const EMPTY = freezeList([], NodeListProto);

  api.dom = function (flat) {
    const nodes = [];
    let doc = null;
    for (let i = 0; i + 5 < flat.length; i += 6) {
      const t = flat[i];
      const proto = PROTOS[t];
      if (!proto) throw new TypeError('unknown DOM node type ' + t);
      const node = Object.create(proto);
      const r = {
        t: t, n: flat[i + 1], ns: flat[i + 2] === '' ? null : flat[i + 2], l: flat[i + 3],
        v: flat[i + 4], parent: null, owner: null, kids: t === 1 || t === 9 ? [] : EMPTY,
        attrs: t === 1 ? [] : null, doc: doc, i: 0,
      };
      Object.defineProperty(node, R, { value: r });
      if (t === 9) doc = node;
      const parent = nodes[flat[i + 5]];
      if (parent !== undefined) {
        const p = rec(parent);
        if (t === 2) { r.owner = parent; p.attrs.push(node); }
        else { r.parent = parent; r.i = p.kids.length; p.kids.push(node); }
      }
      nodes.push(node);
    }
    for (let i = 0; i < nodes.length; i++) {
      const r = rec(nodes[i]);
      if (r.kids !== EMPTY) r.kids = freezeList(r.kids, NodeListProto);
      if (r.attrs !== null) r.attrs = freezeList(r.attrs, NamedNodeMapProto);
      Object.freeze(r);
      Object.freeze(nodes[i]);
    }
    return doc;
  };
})(globalThis.__vxml);
