//! Strict JSON: a validating parser into a flat arena of nodes that remember their source spans,
//! and a writer that re-emits the original bytes around edits.
//!
//! Why not serde_json: a privacy gateway must refuse what a lenient reader would accept differently
//! from the upstream (duplicate member names, lone surrogates, a BOM, comments, NaN, trailing commas,
//! concatenated documents, absurd nesting), and it must give back untouched parts byte for byte
//! (numbers beyond f64, key order, escapes). Both follow from keeping spans instead of values.
//! Errors carry a kind and a byte offset, never content, so they are safe to log.

use std::borrow::Cow;
use std::collections::HashSet;

/// Deepest nesting accepted (the top-level value is depth 1).
pub const MAX_DEPTH: usize = 128;

/// "No node" in the arena's links.
pub const NONE: u32 = u32::MAX;

/// Index of a node in [`Document::nodes`].
pub type NodeId = u32;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// A number, kept as its source text.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// One value in the document.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// For strings: the source contains escapes (unescape before comparing).
    pub escaped: bool,
    /// For members: the key contains escapes.
    pub key_escaped: bool,
    /// Value span in the source, `[start, end)`; strings include their quotes.
    pub start: u32,
    /// End of the value span.
    pub end: u32,
    /// For members: the key's span including quotes; `NONE` otherwise.
    pub key_start: u32,
    /// End of the key span.
    pub key_end: u32,
    /// The enclosing array or object; `NONE` for the root.
    pub parent: NodeId,
    /// First child of an array or object.
    pub first_child: NodeId,
    /// Next member or element of the same parent.
    pub next_sibling: NodeId,
    /// Number of children of an array or object.
    pub len: u32,
}

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Empty or whitespace-only input.
    #[error("the body is empty")]
    Empty,
    /// Not UTF-8.
    #[error("the body is not valid UTF-8 (at byte {0})")]
    InvalidUtf8(usize),
    /// Starts with a byte-order mark.
    #[error("the body starts with a byte-order mark")]
    ByteOrderMark,
    /// Anything the JSON grammar does not allow (comments, NaN, trailing commas, bad escapes…).
    #[error("the body is not valid JSON (at byte {0})")]
    Syntax(usize),
    /// A `\u` escape of half a surrogate pair.
    #[error("the body has a lone surrogate escape (at byte {0})")]
    LoneSurrogate(usize),
    /// The same member name twice in one object (compared after unescaping).
    #[error("the body has a duplicate member name (at byte {0})")]
    DuplicateKey(usize),
    /// A member name with a control character (U+0000 to U+001F) once unescaped: no API has
    /// one, and a reader that stops at NUL would see another name than the rules did.
    #[error("the body has a control character in a member name (at byte {0})")]
    ControlInKey(usize),
    /// Deeper than [`MAX_DEPTH`].
    #[error("the body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More than whitespace after the first value (e.g. two documents).
    #[error("the body has data after the JSON value (at byte {0})")]
    TrailingData(usize),
    /// Larger than the arena's 32-bit offsets (4 GiB).
    #[error("the body is too large to inspect")]
    TooLarge,
}

/// A parsed document: the source and its nodes in document (pre-)order; node 0 is the root.
pub struct Document<'a> {
    src: &'a [u8],
    /// Every value, parents before children.
    pub nodes: Vec<Node>,
}

impl<'a> Document<'a> {
    /// Parses `src` strictly.
    pub fn parse(src: &'a [u8]) -> Result<Document<'a>, JsonError> {
        if src.len() >= NONE as usize {
            return Err(JsonError::TooLarge);
        }
        if src.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return Err(JsonError::ByteOrderMark);
        }
        if let Err(e) = std::str::from_utf8(src) {
            return Err(JsonError::InvalidUtf8(e.valid_up_to()));
        }
        let mut parser = Parser {
            src,
            pos: 0,
            nodes: Vec::with_capacity(src.len() / 16 + 1),
            seen_keys: HashSet::new(),
            keys: Vec::new(),
        };
        parser.skip_ws();
        if parser.pos == src.len() {
            return Err(JsonError::Empty);
        }
        parser.value(NONE, 1, Key::NONE)?;
        parser.skip_ws();
        if parser.pos != src.len() {
            return Err(JsonError::TrailingData(parser.pos));
        }
        Ok(Document {
            src,
            nodes: parser.nodes,
        })
    }

    /// The source bytes.
    pub fn source(&self) -> &'a [u8] {
        self.src
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// The source text of a node's value.
    pub fn raw(&self, id: NodeId) -> &'a [u8] {
        let n = self.node(id);
        &self.src[n.start as usize..n.end as usize]
    }

    /// The children of an array or object, in order.
    pub fn children(&self, id: NodeId) -> Children<'_, 'a> {
        Children {
            doc: self,
            next: self.node(id).first_child,
        }
    }

    /// A member's key, unescaped (`None` for array elements and the root).
    pub fn key(&self, id: NodeId) -> Option<Cow<'a, str>> {
        let n = self.node(id);
        if n.key_start == NONE {
            return None;
        }
        Some(string_contents(
            &self.src[n.key_start as usize..n.key_end as usize],
            n.key_escaped,
        ))
    }

    /// Whether a member's key equals `name` (after unescaping).
    pub fn key_is(&self, id: NodeId, name: &str) -> bool {
        let n = self.node(id);
        if n.key_start == NONE {
            return false;
        }
        let raw = &self.src[n.key_start as usize + 1..n.key_end as usize - 1];
        if n.key_escaped {
            unescape(raw) == name
        } else {
            raw == name.as_bytes()
        }
    }

    /// A string node's value, unescaped.
    pub fn str_value(&self, id: NodeId) -> Option<Cow<'a, str>> {
        let n = self.node(id);
        (n.kind == Kind::String).then(|| string_contents(self.raw(id), n.escaped))
    }

    /// The member `name` of an object node.
    pub fn member(&self, object: NodeId, name: &str) -> Option<NodeId> {
        if self.node(object).kind != Kind::Object {
            return None;
        }
        self.children(object).find(|&c| self.key_is(c, name))
    }

    /// The RFC 9535 normalized path of a node, e.g. `$['shipments'][0]['email']`.
    pub fn path_of(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut node = id;
        while node != NONE {
            let n = self.node(node);
            if n.parent == NONE {
                break;
            }
            match self.key(node) {
                Some(key) => {
                    let mut part = String::from("['");
                    for c in key.chars() {
                        match c {
                            '\'' => part.push_str("\\'"),
                            '\\' => part.push_str("\\\\"),
                            c if (c as u32) < 0x20 => {
                                part.push_str(&format!("\\u{:04x}", c as u32))
                            }
                            c => part.push(c),
                        }
                    }
                    part.push_str("']");
                    parts.push(part);
                }
                None => {
                    let index = self
                        .children(n.parent)
                        .position(|c| c == node)
                        .unwrap_or_default();
                    parts.push(format!("[{index}]"));
                }
            }
            node = n.parent;
        }
        parts.reverse();
        format!("${}", parts.concat())
    }

    /// Renders the document with `edits` applied (`edits[node]`, indexed like `nodes`).
    /// Untouched subtrees are copied from the source byte for byte; containers that hold an edit
    /// are re-emitted without insignificant whitespace.
    pub fn render(&self, edits: &Edits) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.src.len() + 64);
        self.write(0, edits, &mut 0, &mut out);
        out
    }

    /// Writes node `id`. The walk meets nodes in document order, as the edits are sorted, so
    /// `cursor` (an index into the edits) only moves forward: no lookup per node.
    fn write(&self, id: NodeId, edits: &Edits, cursor: &mut usize, out: &mut Vec<u8>) {
        match edits.at(cursor, id) {
            Some(Edit::Replace(bytes)) => return out.extend_from_slice(bytes),
            // Only the root can get here (children are skipped by their parent).
            Some(Edit::Remove) => return out.extend_from_slice(b"null"),
            None => {}
        }
        if !edits.is_dirty(id) {
            return out.extend_from_slice(self.raw(id));
        }
        let node = self.node(id);
        let (open, close) = if node.kind == Kind::Object {
            (b'{', b'}')
        } else {
            (b'[', b']')
        };
        out.push(open);
        let mut first = true;
        for child in self.children(id) {
            if matches!(edits.at(cursor, child), Some(Edit::Remove)) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            let c = self.node(child);
            if c.key_start != NONE {
                out.extend_from_slice(&self.src[c.key_start as usize..c.key_end as usize]);
                out.push(b':');
            }
            self.write(child, edits, cursor, out);
        }
        out.push(close);
    }
}

/// Iterator over a container's children.
pub struct Children<'d, 'a> {
    doc: &'d Document<'a>,
    next: NodeId,
}

impl Iterator for Children<'_, '_> {
    type Item = NodeId;
    fn next(&mut self) -> Option<NodeId> {
        if self.next == NONE {
            return None;
        }
        let id = self.next;
        self.next = self.doc.node(id).next_sibling;
        Some(id)
    }
}

/// A change to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the value with these JSON bytes (borrowed when they are a constant, such as the
    /// redaction marker, so that most edits allocate nothing).
    Replace(Cow<'static, [u8]>),
    /// Delete the member or element.
    Remove,
}

/// Edits for one document, with the set of containers that hold one (which must be re-emitted).
///
/// Sparse: a body of thousands of nodes usually has a few dozen edits, so the edits are kept
/// sorted by node, with a bit per node for "edited" and "holds an edit", instead of a slot per
/// node.
pub struct Edits {
    /// By node, ascending (the engine sets them in document order, so inserting appends).
    edits: Vec<(NodeId, Edit)>,
    /// The nodes in `edits`: whether a node is edited is one bit test, no search.
    edited: NodeBits,
    /// The containers that hold an edit (re-emitted when rendering).
    dirty: NodeBits,
}

/// One bit per node of a document.
struct NodeBits(Vec<u64>);

impl NodeBits {
    fn new(nodes: usize) -> NodeBits {
        NodeBits(vec![0; nodes.div_ceil(64)])
    }

    fn has(&self, id: NodeId) -> bool {
        self.0[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn add(&mut self, id: NodeId) {
        self.0[id as usize / 64] |= 1 << (id % 64);
    }
}

impl Edits {
    /// No edits yet for a document of `doc.nodes.len()` nodes.
    pub fn new(doc: &Document<'_>) -> Edits {
        Edits {
            edits: Vec::new(),
            edited: NodeBits::new(doc.nodes.len()),
            dirty: NodeBits::new(doc.nodes.len()),
        }
    }

    /// Number of nodes edited.
    pub fn len(&self) -> usize {
        self.edits.len()
    }

    /// True when nothing was edited.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The edit of a node, if any.
    pub fn get(&self, id: NodeId) -> Option<&Edit> {
        if !self.edited.has(id) {
            return None;
        }
        self.edits
            .binary_search_by_key(&id, |(node, _)| *node)
            .ok()
            .map(|at| &self.edits[at].1)
    }

    /// The edit of `id`, moving `cursor` past the edits of nodes before it (which a walk in
    /// document order has passed, or skipped with an enclosing edit).
    fn at(&self, cursor: &mut usize, id: NodeId) -> Option<&Edit> {
        while self.edits.get(*cursor).is_some_and(|(node, _)| *node < id) {
            *cursor += 1;
        }
        match self.edits.get(*cursor) {
            Some((node, edit)) if *node == id => Some(edit),
            _ => None,
        }
    }

    fn is_dirty(&self, id: NodeId) -> bool {
        self.dirty.has(id)
    }

    /// Whether `id` or one of its ancestors is already edited (a change below it is moot).
    pub fn covered(&self, doc: &Document<'_>, mut id: NodeId) -> bool {
        while id != NONE {
            if self.edited.has(id) {
                return true;
            }
            id = doc.node(id).parent;
        }
        false
    }

    /// Records `edit` for `id` and marks its ancestors for re-emission.
    pub fn set(&mut self, doc: &Document<'_>, id: NodeId, edit: Edit) {
        match self.edits.last() {
            Some((last, _)) if *last >= id => {
                match self.edits.binary_search_by_key(&id, |(node, _)| *node) {
                    Ok(at) => self.edits[at].1 = edit,
                    Err(at) => self.edits.insert(at, (id, edit)),
                }
            }
            _ => self.edits.push((id, edit)),
        }
        self.edited.add(id);
        let mut parent = doc.node(id).parent;
        while parent != NONE && !self.dirty.has(parent) {
            self.dirty.add(parent);
            parent = doc.node(parent).parent;
        }
    }
}

/// The text inside a string token (quotes included in `raw`), unescaped when needed.
fn string_contents(raw: &[u8], escaped: bool) -> Cow<'_, str> {
    let inner = &raw[1..raw.len() - 1];
    if escaped {
        Cow::Owned(unescape(inner))
    } else {
        // The whole document was checked to be UTF-8 and the token boundaries are ASCII quotes.
        Cow::Borrowed(std::str::from_utf8(inner).expect("validated UTF-8"))
    }
}

/// Unescapes a validated string body.
fn unescape(inner: &[u8]) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' {
            let run_end = inner[i..]
                .iter()
                .position(|&c| c == b'\\')
                .map_or(inner.len(), |p| i + p);
            out.push_str(std::str::from_utf8(&inner[i..run_end]).expect("validated UTF-8"));
            i = run_end;
            continue;
        }
        let esc = inner[i + 1];
        i += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let hi = hex4(&inner[i..i + 4]).expect("validated escape");
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    let lo = hex4(&inner[i + 2..i + 6]).expect("validated pair");
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).expect("validated code point")
            }
        };
        out.push(c);
    }
    out
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &b in &bytes[..4] {
        v = v * 16 + (b as char).to_digit(16)?;
    }
    Some(v)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    /// Scratch set for duplicate detection in large objects.
    seen_keys: HashSet<Cow<'a, str>>,
    /// The member keys of every object being parsed, innermost last: each object checks its
    /// own (from where it started) for duplicates when it closes, while the keys are still in
    /// cache, instead of walking its members again.
    keys: Vec<MemberKey>,
}

/// The member name a value is parsed under (`NONE` spans for elements and the root).
#[derive(Clone, Copy)]
struct Key {
    start: u32,
    end: u32,
    escaped: bool,
}

impl Key {
    const NONE: Key = Key {
        start: NONE,
        end: NONE,
        escaped: false,
    };
}

/// One member's key, for the duplicate check.
#[derive(Clone, Copy)]
struct MemberKey {
    /// Length and first bytes of the raw key: different prints mean different keys.
    print: u64,
    /// The key's span, quotes included.
    start: u32,
    end: u32,
    escaped: bool,
    node: NodeId,
}

/// Length and first eight bytes of the raw key `src[start..end]`, as one word: different prints
/// mean different keys. Read as one word where the source allows (no copy of a few bytes).
fn key_print(src: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let head = match src.get(start..start + 8) {
        Some(word) => {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if len >= 8 {
                word
            } else {
                word & ((1u64 << (len * 8)) - 1)
            }
        }
        None => src[start..end]
            .iter()
            .enumerate()
            .fold(0, |head, (i, &b)| head | u64::from(b) << (8 * i)),
    };
    head ^ (len as u64) << 56
}

/// Whether any of the eight bytes in `word` is a quote, a backslash or below 0x20 (may say yes
/// for a byte next to one that is; never no for one that is). Bytes of 0x80 and above, UTF-8's,
/// never count.
fn needs_care(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (quote | backslash | control) & HIGH != 0
}

/// Objects up to this many members are checked for duplicates pairwise; larger ones by hashing.
const PAIRWISE_KEYS: usize = 16;

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while let Some(&b) = self.src.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Adds a node whose value spans `start..self.pos`, written whole in one go (a scalar is
    /// pushed once parsed; a container when it opens, its end set when it closes).
    fn push(
        &mut self,
        kind: Kind,
        escaped: bool,
        start: usize,
        parent: NodeId,
        key: Key,
    ) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            kind,
            escaped,
            key_escaped: key.escaped,
            start: start as u32,
            end: self.pos as u32,
            key_start: key.start,
            key_end: key.end,
            parent,
            first_child: NONE,
            next_sibling: NONE,
            len: 0,
        });
        id
    }

    /// Parses one value at `pos` (whitespace already skipped), the member `key` of `parent`.
    fn value(&mut self, parent: NodeId, depth: usize, key: Key) -> Result<NodeId, JsonError> {
        let Some(&b) = self.src.get(self.pos) else {
            return Err(JsonError::Syntax(self.pos));
        };
        let start = self.pos;
        match b {
            b'{' | b'[' => {
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                let id = if b == b'{' {
                    self.object(parent, depth, key)?
                } else {
                    self.array(parent, depth, key)?
                };
                self.nodes[id as usize].end = self.pos as u32;
                Ok(id)
            }
            b'"' => {
                let escaped = self.string()?;
                Ok(self.push(Kind::String, escaped, start, parent, key))
            }
            b't' => self.literal(b"true", Kind::Bool, parent, key),
            b'f' => self.literal(b"false", Kind::Bool, parent, key),
            b'n' => self.literal(b"null", Kind::Null, parent, key),
            b'-' | b'0'..=b'9' => {
                self.number()?;
                Ok(self.push(Kind::Number, false, start, parent, key))
            }
            _ => Err(JsonError::Syntax(self.pos)),
        }
    }

    fn literal(
        &mut self,
        word: &[u8],
        kind: Kind,
        parent: NodeId,
        key: Key,
    ) -> Result<NodeId, JsonError> {
        if !self.src[self.pos..].starts_with(word) {
            return Err(JsonError::Syntax(self.pos));
        }
        let start = self.pos;
        self.pos += word.len();
        Ok(self.push(kind, false, start, parent, key))
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let src = self.src;
        let mut i = self.pos;
        if src.get(i) == Some(&b'-') {
            i += 1;
        }
        match src.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while src.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(JsonError::Syntax(i)),
        }
        if src.get(i) == Some(&b'.') {
            i += 1;
            if !src.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(JsonError::Syntax(i));
            }
            while src.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(src.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(src.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !src.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(JsonError::Syntax(i));
            }
            while src.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(())
    }

    /// Consumes a string token; returns whether it contains escapes.
    fn string(&mut self) -> Result<bool, JsonError> {
        let src = self.src;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            // Fast scan over plain bytes: eight at a time while none of them is a quote, a
            // backslash or a control character, then one at a time.
            while let Some(word) = src.get(i..i + 8) {
                if needs_care(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
                    break;
                }
                i += 8;
            }
            while let Some(&b) = src.get(i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                i += 1;
            }
            match src.get(i) {
                None => return Err(JsonError::Syntax(i)),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match src.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let code =
                                hex4(&src[(i + 2).min(src.len())..]).ok_or(JsonError::Syntax(i))?;
                            if (0xDC00..0xE000).contains(&code) {
                                return Err(JsonError::LoneSurrogate(i));
                            }
                            if (0xD800..0xDC00).contains(&code) {
                                let low = (src.get(i + 6) == Some(&b'\\')
                                    && src.get(i + 7) == Some(&b'u'))
                                .then(|| hex4(&src[(i + 8).min(src.len())..]))
                                .flatten();
                                match low {
                                    Some(lo) if (0xDC00..0xE000).contains(&lo) => i += 12,
                                    _ => return Err(JsonError::LoneSurrogate(i)),
                                }
                            } else {
                                i += 6;
                            }
                        }
                        _ => return Err(JsonError::Syntax(i)),
                    }
                }
                Some(_) => return Err(JsonError::Syntax(i)),
            }
        }
    }

    fn array(&mut self, parent: NodeId, depth: usize, key: Key) -> Result<NodeId, JsonError> {
        let id = self.push(Kind::Array, false, self.pos, parent, key);
        self.pos += 1;
        self.skip_ws();
        if self.src.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(id);
        }
        let mut last = NONE;
        loop {
            self.skip_ws();
            let child = self.value(id, depth + 1, Key::NONE)?;
            self.link(id, last, child);
            last = child;
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(id);
                }
                _ => return Err(JsonError::Syntax(self.pos)),
            }
        }
    }

    fn object(&mut self, parent: NodeId, depth: usize, key: Key) -> Result<NodeId, JsonError> {
        let id = self.push(Kind::Object, false, self.pos, parent, key);
        self.pos += 1;
        self.skip_ws();
        if self.src.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(id);
        }
        let mut last = NONE;
        let keys_base = self.keys.len();
        loop {
            self.skip_ws();
            if self.src.get(self.pos) != Some(&b'"') {
                return Err(JsonError::Syntax(self.pos));
            }
            let key_start = self.pos;
            let key_escaped = self.string()?;
            let key_end = self.pos;
            self.skip_ws();
            if self.src.get(self.pos) != Some(&b':') {
                return Err(JsonError::Syntax(self.pos));
            }
            self.pos += 1;
            self.skip_ws();
            let member = Key {
                start: key_start as u32,
                end: key_end as u32,
                escaped: key_escaped,
            };
            let child = self.value(id, depth + 1, member)?;
            self.keys.push(MemberKey {
                print: key_print(self.src, key_start + 1, key_end - 1),
                start: key_start as u32,
                end: key_end as u32,
                escaped: key_escaped,
                node: child,
            });
            self.link(id, last, child);
            last = child;
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    let checked = self.check_keys(keys_base);
                    self.keys.truncate(keys_base);
                    checked?;
                    return Ok(id);
                }
                _ => return Err(JsonError::Syntax(self.pos)),
            }
        }
    }

    fn link(&mut self, parent: NodeId, last: NodeId, child: NodeId) {
        if last == NONE {
            self.nodes[parent as usize].first_child = child;
        } else {
            self.nodes[last as usize].next_sibling = child;
        }
        self.nodes[parent as usize].len += 1;
    }

    fn key_text(&self, id: NodeId) -> Cow<'a, str> {
        let n = &self.nodes[id as usize];
        string_contents(
            &self.src[n.key_start as usize..n.key_end as usize],
            n.key_escaped,
        )
    }

    /// Checks the keys of the object whose members start at `base` in `keys`: no escaped
    /// control characters, no duplicates (compared unescaped).
    fn check_keys(&mut self, base: usize) -> Result<(), JsonError> {
        let keys = &self.keys[base..];
        let any_escaped = keys.iter().any(|k| k.escaped);
        if any_escaped {
            // Raw control characters are already invalid JSON; escaped ones are caught here.
            for k in keys.iter().filter(|k| k.escaped) {
                if self.key_text(k.node).chars().any(|c| c < ' ') {
                    return Err(JsonError::ControlInKey(k.start as usize));
                }
            }
        }
        if keys.len() <= PAIRWISE_KEYS && !any_escaped {
            // Raw keys: equal prints first, then bytes.
            for (i, a) in keys.iter().enumerate() {
                for b in &keys[..i] {
                    if a.print == b.print
                        && self.src[a.start as usize..a.end as usize]
                            == self.src[b.start as usize..b.end as usize]
                    {
                        return Err(JsonError::DuplicateKey(a.start as usize));
                    }
                }
            }
            return Ok(());
        }
        if keys.len() <= PAIRWISE_KEYS {
            for (i, a) in keys.iter().enumerate() {
                for b in &keys[..i] {
                    if self.key_text(a.node) == self.key_text(b.node) {
                        return Err(JsonError::DuplicateKey(a.start as usize));
                    }
                }
            }
            return Ok(());
        }
        let mut seen = std::mem::take(&mut self.seen_keys);
        seen.clear();
        let mut result = Ok(());
        for k in &self.keys[base..] {
            if !seen.insert(self.key_text(k.node)) {
                result = Err(JsonError::DuplicateKey(k.start as usize));
                break;
            }
        }
        seen.clear();
        self.seen_keys = seen;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<usize, JsonError> {
        Document::parse(s.as_bytes()).map(|d| d.nodes.len())
    }

    #[test]
    fn accepts_valid_json() {
        let cases: &[(&str, usize)] = &[
            ("{}", 1),
            ("[]", 1),
            (" 0 ", 1),
            ("-0.5e+10", 1),
            ("\"a\\u00e9\\ud83d\\ude00\\n\"", 1),
            ("{\"a\":[1,2,{\"b\":null}],\"c\":true}", 7),
            ("1e400", 1),
            ("12345678901234567890.12345", 1),
            ("{\"a\":1,\"A\":2}", 3),
            // Control characters are fine in values, only not in member names.
            ("{\"a\":\"\\u0000\"}", 2),
        ];
        for (input, nodes) in cases {
            assert_eq!(parse(input), Ok(*nodes), "{input}");
        }
    }

    #[test]
    fn refuses_what_a_lenient_reader_would_take() {
        let cases: &[(&[u8], JsonError)] = &[
            (b"", JsonError::Empty),
            (b"  \n", JsonError::Empty),
            (b"\xEF\xBB\xBF{}", JsonError::ByteOrderMark),
            (b"{\"a\":\"\xff\"}", JsonError::InvalidUtf8(6)),
            (b"{\"a\":1,\"a\":2}", JsonError::DuplicateKey(7)),
            (
                b"{\"email\":1,\"\\u0065mail\":2}",
                JsonError::DuplicateKey(11),
            ),
            (b"{\"a\\u0000\":1}", JsonError::ControlInKey(1)),
            (b"{\"x\":{\"email\\u001f\":1}}", JsonError::ControlInKey(6)),
            (b"\"\\ud800\"", JsonError::LoneSurrogate(1)),
            (b"\"\\udc00\"", JsonError::LoneSurrogate(1)),
            (b"\"\\ud800\\u0041\"", JsonError::LoneSurrogate(1)),
            (b"NaN", JsonError::Syntax(0)),
            (b"Infinity", JsonError::Syntax(0)),
            (b"-Infinity", JsonError::Syntax(1)),
            (b"{\"a\":1,}", JsonError::Syntax(7)),
            (b"[1,]", JsonError::Syntax(3)),
            (b"{\"a\":1}/*c*/", JsonError::TrailingData(7)),
            (b"// c\n{}", JsonError::Syntax(0)),
            (b"{}{}", JsonError::TrailingData(2)),
            (b"{} []", JsonError::TrailingData(3)),
            (b"01", JsonError::TrailingData(1)),
            (b"1.", JsonError::Syntax(2)),
            (b".5", JsonError::Syntax(0)),
            (b"{'a':1}", JsonError::Syntax(1)),
            (b"\"tab\there\"", JsonError::Syntax(4)),
            (b"\"\\x41\"", JsonError::Syntax(1)),
            (b"[1 2]", JsonError::Syntax(3)),
            (b"tru", JsonError::Syntax(0)),
            (b"\"open", JsonError::Syntax(5)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Document::parse(input).map(|d| d.nodes.len()),
                Err(*expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn duplicates_are_per_object_whatever_the_nesting() {
        // The same name in nested objects and in sibling objects is no duplicate.
        let ok = br#"{"a":{"a":1,"b":{"a":2}},"b":[{"a":1},{"a":1}],"c":{"c":{"c":3}}}"#;
        assert!(Document::parse(ok).is_ok());
        // A duplicate after a nested object, and one inside a nested object, are found.
        let after = br#"{"a":{"x":1,"y":{"z":2}},"b":2,"a":3}"#;
        assert_eq!(parse_err(after), JsonError::DuplicateKey(31));
        let inside = br#"{"a":1,"b":[{"k":1,"k":2}]}"#;
        assert_eq!(parse_err(inside), JsonError::DuplicateKey(19));
    }

    fn parse_err(input: &[u8]) -> JsonError {
        Document::parse(input).map(|_| ()).unwrap_err()
    }

    #[test]
    fn duplicate_detection_in_large_objects() {
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", members.join(","));
        assert!(Document::parse(ok.as_bytes()).is_ok());
        members.push("\"k\\u0031\":1".into());
        let dup = format!("{{{}}}", members.join(","));
        assert!(matches!(
            Document::parse(dup.as_bytes()),
            Err(JsonError::DuplicateKey(_))
        ));
    }

    #[test]
    fn depth_limit_is_exact_and_deep_input_does_not_overflow() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Document::parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&deep), Err(JsonError::TooDeep));
        let hostile = "[".repeat(100_000);
        assert_eq!(parse(&hostile), Err(JsonError::TooDeep));
        let objects = "{\"a\":".repeat(100_000);
        assert_eq!(parse(&objects), Err(JsonError::TooDeep));
    }

    #[test]
    fn keys_and_strings_unescape() {
        let doc =
            Document::parse(br#"{"\u0065mail":"J\u00e9\"s\ud83d\ude00","plain":"x"}"#).unwrap();
        let children: Vec<_> = doc.children(0).collect();
        assert_eq!(doc.key(children[0]).unwrap(), "email");
        assert!(doc.key_is(children[0], "email"));
        assert_eq!(doc.str_value(children[0]).unwrap(), "Jé\"s😀");
        assert_eq!(doc.member(0, "plain"), Some(children[1]));
        assert_eq!(doc.member(0, "email"), Some(children[0]));
    }

    #[test]
    fn normalized_paths() {
        let doc = Document::parse(br#"{"a":[1,{"it's":2}]}"#).unwrap();
        let a = doc.member(0, "a").unwrap();
        let inner = doc.children(a).nth(1).unwrap();
        let its = doc.children(inner).next().unwrap();
        assert_eq!(doc.path_of(0), "$");
        assert_eq!(doc.path_of(inner), "$['a'][1]");
        assert_eq!(doc.path_of(its), "$['a'][1]['it\\'s']");
    }

    #[test]
    fn the_word_scan_finds_every_byte_a_string_must_stop_at() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = byte;
                let stops = byte == b'"' || byte == b'\\' || byte < 0x20;
                assert_eq!(
                    needs_care(u64::from_le_bytes(word)),
                    stops,
                    "{byte:#x} at {at}"
                );
            }
        }
        // Strings of every length around the word size, with the stop at every place.
        for len in 0..20 {
            for at in 0..len {
                let mut text = vec![b'x'; len];
                text[at] = b'\n';
                let doc = format!("[\"{}\"]", String::from_utf8(text).unwrap());
                assert_eq!(parse(&doc), Err(JsonError::Syntax(2 + at)));
            }
        }
    }

    #[test]
    fn member_prints_are_length_and_first_bytes() {
        let src = br#"{"":1,"a":1,"abcdefgh":1,"abcdefghi":1}"#;
        for (start, end) in [(2, 2), (8, 9), (14, 22), (28, 37)] {
            let raw = &src[start..end];
            let mut head = [0u8; 8];
            head[..raw.len().min(8)].copy_from_slice(&raw[..raw.len().min(8)]);
            let want = u64::from_le_bytes(head) ^ (raw.len() as u64) << 56;
            assert_eq!(key_print(src, start, end), want);
            // Near the end of the source, where no whole word can be read.
            assert_eq!(key_print(raw, 0, raw.len()), want);
        }
    }

    #[test]
    fn render_is_byte_faithful_around_edits() {
        let src =
            br#"{ "big": 1e400, "precise": 12345678901234567890.12345, "z": 1, "a": [1, 2, 3],
            "esc": "\u00e9", "drop": {"x": 1}, "r": {"email": "j@x.com", "keep": 0.10} }"#;
        let doc = Document::parse(src).unwrap();
        let edits = Edits::new(&doc);
        assert_eq!(
            doc.render(&edits),
            src.to_vec(),
            "no edits: identical bytes"
        );

        let mut edits = Edits::new(&doc);
        let drop = doc.member(0, "drop").unwrap();
        let r = doc.member(0, "r").unwrap();
        let email = doc.member(r, "email").unwrap();
        let array = doc.member(0, "a").unwrap();
        let second = doc.children(array).nth(1).unwrap();
        edits.set(&doc, drop, Edit::Remove);
        edits.set(&doc, email, Edit::Replace(b"\"[REDACTED]\"".into()));
        edits.set(&doc, second, Edit::Remove);
        assert_eq!(edits.len(), 3);
        let out = String::from_utf8(doc.render(&edits)).unwrap();
        assert_eq!(
            out,
            r#"{"big":1e400,"precise":12345678901234567890.12345,"z":1,"a":[1,3],"esc":"\u00e9","r":{"email":"[REDACTED]","keep":0.10}}"#
        );
        assert!(Document::parse(out.as_bytes()).is_ok());
        assert!(edits.covered(&doc, email));
        assert!(!edits.covered(&doc, doc.member(0, "z").unwrap()));
    }
}
