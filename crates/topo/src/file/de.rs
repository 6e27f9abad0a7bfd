//! Reading the file's shape (keys and value types) so that every problem is
//! reported, not only the first one serde meets.
//!
//! toml's own deserializer stops at the first unknown key or wrong type. This
//! one walks toml's spanned document instead and, at each value, knows the
//! type the target wants (serde's hint): a value of the wrong type or out of
//! the type's range is reported with its key, its table and the range, and a
//! neutral stand-in (0, "", false, empty) is handed on so the walk goes on.
//! The stand-ins' spans are remembered, so the later checks drop what they
//! would say about them. Unknown keys are reported and skipped. A problem no
//! stand-in can hide (a required key missing, a list of the wrong length)
//! drops the value it is in and the walk is repeated without it: those files
//! get their shape problems only, as later checks would mislead.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::Diagnostic;

type Span = Range<usize>;

/// Rounds of the walk (one per problem that drops a value) before giving up.
const MAX_ROUNDS: usize = 50;

/// What reading the shape found, besides the value.
#[derive(Default)]
pub(super) struct Shape {
    pub errors: Vec<Diagnostic>,
    /// Values replaced by a stand-in: later checks say nothing about them.
    pub stand_ins: Vec<Span>,
}

impl Shape {
    /// True when `span` is, holds or lies in a stand-in. Stand-ins never
    /// overlap (what is inside one is not read), and are sorted, so this
    /// is a binary search: a file with many problems stays linear.
    pub fn covers(&self, span: &Span) -> bool {
        let end = |r: &Span| r.end.max(r.start + 1);
        let after = self.stand_ins.partition_point(|s| s.start < end(span));
        after > 0 && span.start < end(&self.stand_ins[after - 1])
    }
}

/// Read `source` into `T`. `Ok` when the later checks can run (perhaps with
/// shape problems to add to theirs); `Err` with every problem otherwise.
pub(super) fn read<T>(source: &str) -> Result<(T, Shape), Vec<Diagnostic>>
where
    T: for<'de> Deserialize<'de>,
{
    let (root, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        return Err(syntax_errors(source, &syntax));
    }
    let cx = Cx {
        source,
        ..Cx::default()
    };
    let span = root.span();
    let root = Spanned::new(span.clone(), DeValue::Table(root.into_inner()));
    let mut cascaded = false;
    for _ in 0..MAX_ROUNDS {
        *cx.failed.borrow_mut() = None;
        let top = Val {
            v: &root,
            cx: &cx,
            path: String::new(),
            key: None,
        };
        match T::deserialize(top) {
            Ok(t) => {
                let shape = cx.into_shape();
                if cascaded {
                    return Err(shape.errors);
                }
                return Ok((t, shape));
            }
            Err(e) => {
                if let DeErr::Msg(m) = e {
                    cx.report(None, m, "see docs/topology.md for every key the file takes");
                    break;
                }
                let Some(failed) = cx.failed.borrow_mut().take() else {
                    break;
                };
                // The whole file (a top-level key missing) cannot be left
                // out: nothing more to find.
                if !cx.dropped.borrow_mut().insert((failed.start, failed.end)) || failed == span {
                    break;
                }
                cascaded = true;
            }
        }
    }
    Err(cx.into_shape().errors)
}

/// A syntax error, with `duplicate key` made to say which and where the
/// first one is (looked up for the first few only: each look-up reads the
/// file).
fn syntax_errors(source: &str, errors: &[toml::de::Error]) -> Vec<Diagnostic> {
    let lines = crate::error::LineIndex::new(source);
    // The keys of a table written twice clash with the first one's too:
    // those follow from the one duplicate and are left out.
    let mut dup_table: Option<(usize, usize)> = None;
    let mut out = Vec::new();
    for (n, e) in errors.iter().enumerate() {
        let msg = e.message().trim().to_string();
        let span = e.span();
        if msg.starts_with("duplicate key") {
            if let Some(s) = &span {
                let line = lines.line_col(source, s.start).0;
                if let Some((from, to)) = dup_table {
                    if line > from && line < to {
                        continue;
                    }
                }
                if n < 50 {
                    if let Some((d, header)) = duplicate(source, &lines, s.clone()) {
                        if header {
                            let next = (line + 1..=lines.count())
                                .find(|&l| {
                                    source[lines.line_range(source, l)]
                                        .trim_start()
                                        .starts_with('[')
                                })
                                .unwrap_or(usize::MAX);
                            dup_table = Some((line, next));
                        }
                        out.push(d);
                        continue;
                    }
                }
            }
        }
        out.push(Diagnostic::new(msg, span).help("see docs/topology.md for the file's syntax"));
    }
    out
}

/// `[nodes.X]` (or a key) written twice: name it and both positions.
fn duplicate(
    source: &str,
    lines: &crate::error::LineIndex,
    span: Span,
) -> Option<(Diagnostic, bool)> {
    let (line, _) = lines.line_col(source, span.start);
    let this = lines.line_range(source, line);
    let upto = source.get(this.start..span.end)?.trim();
    let header = |l: &str| -> Option<Vec<String>> {
        let l = l.trim();
        let inner = l.strip_prefix('[')?;
        if inner.starts_with('[') {
            return None;
        }
        Some(split_key(inner))
    };
    // The first place with the same path: a header, or a key in the same
    // table (between the last header above and this line).
    let is_header = header(upto).is_some();
    let (path, first) = if let Some(path) = header(upto) {
        let first = (1..line).find_map(|l| {
            let r = lines.line_range(source, l);
            let text = &source[r.clone()];
            let last = path.last().map_or("", String::as_str);
            (header(text).as_ref() == Some(&path)).then(|| r.start + text.rfind(last).unwrap_or(0))
        })?;
        (path, first)
    } else {
        let key = split_key(upto);
        let top = (1..line)
            .rev()
            .find(|&l| header(&source[lines.line_range(source, l)]).is_some())
            .unwrap_or(0);
        let table = if top == 0 {
            Vec::new()
        } else {
            header(&source[lines.line_range(source, top)]).unwrap_or_default()
        };
        let first = (top.max(1)..line).find_map(|l| {
            let r = lines.line_range(source, l);
            let text = &source[r.clone()];
            let (k, _) = text.split_once('=')?;
            (split_key(k) == key).then(|| r.start + text.len() - text.trim_start().len())
        })?;
        let mut path = table;
        path.extend(key);
        (path, first)
    };
    let what = match path.as_slice() {
        [n, name] if n == "nodes" => format!("node `{}` is declared twice", esc(name)),
        _ => format!("`{}` is written twice", esc(&path.join("."))),
    };
    Some((
        Diagnostic::new(
            format!("{what} (first at {})", lines.at(source, first)),
            Some(span),
        )
        .help("merge the two into one table, or rename one of them (each table and key may appear once)"),
        is_header,
    ))
}

/// `a."b.c".d` -> [a, b.c, d]; enough of TOML's key syntax for headers.
fn split_key(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => out.push(std::mem::take(&mut cur).trim().to_string()),
            (None, ']' | '=') => break,
            (_, c) => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out.retain(|k| !k.is_empty());
    out
}

/// Text from the file as a message may show it: at most 40 characters,
/// control characters escaped.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 40 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Default)]
struct Cx<'s> {
    source: &'s str,
    errors: RefCell<Vec<Diagnostic>>,
    seen: RefCell<HashSet<(Option<Span>, String)>>,
    stand_ins: RefCell<Vec<Span>>,
    /// Values left out of later rounds (each after one problem in it).
    dropped: RefCell<HashSet<(usize, usize)>>,
    /// The innermost value whose problem ended this round.
    failed: RefCell<Option<Span>>,
}

impl Cx<'_> {
    fn report(&self, span: Option<Span>, msg: String, help: &str) {
        if self.seen.borrow_mut().insert((span.clone(), msg.clone())) {
            let mut d = Diagnostic::new(msg, span);
            if !help.is_empty() {
                d = d.help(help);
            }
            self.errors.borrow_mut().push(d);
        }
    }

    fn into_shape(self) -> Shape {
        let mut stand_ins = self.stand_ins.into_inner();
        stand_ins.sort_by_key(|s| s.start);
        stand_ins.dedup();
        Shape {
            errors: self.errors.into_inner(),
            stand_ins,
        }
    }
}

#[derive(Debug)]
enum DeErr {
    /// Already reported; only unwinds.
    Reported,
    Msg(String),
}

impl fmt::Display for DeErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeErr::Reported => f.write_str("reported"),
            DeErr::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeErr {}

impl de::Error for DeErr {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeErr::Msg(msg.to_string())
    }
}

fn toml_err(e: toml::de::Error) -> DeErr {
    DeErr::Msg(e.message().trim().to_string())
}

/// One value of the document, with where it is for messages.
#[derive(Clone)]
struct Val<'a, 'i> {
    v: &'a Spanned<DeValue<'i>>,
    cx: &'a Cx<'a>,
    /// The table it is in, like `nodes.a.interfaces.e`; empty at the top.
    path: String,
    /// Its key in that table (`None` for list items and the top).
    key: Option<&'a str>,
}

/// The range a key takes where it is narrower than its type's; the later
/// checks say the same.
fn key_range(key: &str) -> Option<&'static str> {
    Some(match key {
        "mtu" => "68 to 65535",
        "vlan" | "native" | "trunk" => "1 to 4094",
        "port" => "1 to 65535",
        "count" => "1 to 10000",
        "vni" => "1 to 16777215",
        _ => return None,
    })
}

impl<'a, 'i> Val<'a, 'i> {
    fn span(&self) -> Span {
        self.v.span()
    }

    /// The dotted path of this value itself.
    fn full(&self) -> String {
        match self.key {
            Some(k) if self.path.is_empty() => k.to_string(),
            Some(k) => format!("{}.{k}", self.path),
            None => self.path.clone(),
        }
    }

    /// `[nodes.a] mtu` or `mtu` or `an item of [nodes.a] routes`.
    fn place(&self) -> String {
        let table = if self.path.is_empty() {
            String::new()
        } else {
            format!("[{}] ", self.path)
        };
        match self.key {
            Some(k) => format!("{table}`{}`", esc(k)),
            None if self.path.is_empty() => "the file".into(),
            None => format!("an item of [{}]", self.path),
        }
    }

    fn text(&self) -> String {
        let s = self.span();
        esc(self.cx.source.get(s).unwrap_or("").trim())
    }

    fn type_name(&self) -> &'static str {
        match self.v.get_ref() {
            DeValue::String(_) => "a string",
            DeValue::Integer(_) => "a whole number",
            DeValue::Float(_) => "a number with a fraction",
            DeValue::Boolean(_) => "a boolean",
            DeValue::Datetime(_) => "a date",
            DeValue::Array(_) => "a list",
            DeValue::Table(_) => "a table",
        }
    }

    /// Report a value of the wrong type; the caller hands on a stand-in.
    fn wrong(&self, want: &str) {
        // `a.b = 1` where `a` takes a value is a table: the dots did it.
        let help = if matches!(self.v.get_ref(), DeValue::Table(_)) {
            "a key with dots (unquoted) makes nested tables: write it in quotes, or fix the key"
        } else {
            ""
        };
        self.cx.report(
            Some(self.span()),
            format!(
                "{} = {} is {}, and it takes {want}",
                self.place(),
                self.text(),
                self.type_name()
            ),
            help,
        );
        self.cx.stand_ins.borrow_mut().push(self.span());
    }

    fn int(&self, min: i128, max: i128) -> Option<i128> {
        let range = self
            .key
            .and_then(key_range)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{min} to {max}"));
        let DeValue::Integer(i) = self.v.get_ref() else {
            self.wrong(&format!("a whole number from {range}"));
            return None;
        };
        match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.cx.report(
                    Some(self.span()),
                    format!(
                        "{} = {} is out of range: it is a whole number from {range}",
                        self.place(),
                        self.text()
                    ),
                    "",
                );
                self.cx.stand_ins.borrow_mut().push(self.span());
                None
            }
        }
    }

    fn toml(&self) -> toml::de::ValueDeserializer<'i> {
        toml::de::ValueDeserializer::from(self.v.clone())
    }

    fn child(
        &self,
        v: &'a Spanned<DeValue<'i>>,
        key: Option<&'a str>,
        item: Option<usize>,
    ) -> Val<'a, 'i> {
        let path = match item {
            None => self.full(),
            Some(n) => format!("{} (item {})", self.full(), n + 1),
        };
        Val {
            v,
            cx: self.cx,
            path,
            key,
        }
    }

    /// A problem found by the target type itself (a required key missing):
    /// report it here, drop this value next round.
    fn caught<T>(&self, r: Result<T, DeErr>) -> Result<T, DeErr> {
        match r {
            Err(DeErr::Msg(m)) => {
                let m = m.replace(" field `", " key `");
                self.cx.report(
                    Some(self.span()),
                    format!("{}: {m}", self.place()),
                    "see docs/topology.md for the keys this takes",
                );
                let mut f = self.cx.failed.borrow_mut();
                if f.is_none() {
                    *f = Some(self.span());
                }
                Err(DeErr::Reported)
            }
            r => r,
        }
    }
}

macro_rules! ints {
    ($($m:ident $v:ident $t:ty),*) => {$(
        fn $m<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
            let n = self.int(<$t>::MIN as i128, <$t>::MAX as i128).unwrap_or(0);
            visitor.$v(n as $t)
        }
    )*};
}

impl<'a, 'i> de::Deserializer<'i> for Val<'a, 'i> {
    type Error = DeErr;

    fn deserialize_any<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        match self.v.get_ref() {
            DeValue::Table(t) => visitor.visit_map(Table::new(&self, t, None)),
            DeValue::Array(a) => visitor.visit_seq(Seq::new(&self, a)),
            _ => self.toml().deserialize_any(visitor).map_err(toml_err),
        }
    }

    ints!(deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
          deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64,
          deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16,
          deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64);

    fn deserialize_bool<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        match self.v.get_ref() {
            DeValue::Boolean(b) => visitor.visit_bool(*b),
            _ => {
                self.wrong("true or false");
                visitor.visit_bool(false)
            }
        }
    }

    fn deserialize_f64<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        match self.v.get_ref() {
            DeValue::Integer(_) | DeValue::Float(_) => {
                self.toml().deserialize_f64(visitor).map_err(toml_err)
            }
            _ => {
                self.wrong("a number");
                visitor.visit_f64(0.0)
            }
        }
    }

    fn deserialize_f32<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_str<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        match self.v.get_ref() {
            DeValue::String(_) => self.toml().deserialize_str(visitor).map_err(toml_err),
            _ => {
                self.wrong("a string (in quotes)");
                visitor.visit_str("")
            }
        }
    }

    fn deserialize_string<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        match self.v.get_ref() {
            DeValue::Array(a) => {
                let r = visitor.visit_seq(Seq::new(&self, a));
                self.caught(r)
            }
            _ => {
                self.wrong("a list, like [..]");
                visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<()>()))
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'i>>(self, len: usize, visitor: V) -> Result<V::Value, DeErr> {
        if let DeValue::Array(a) = self.v.get_ref() {
            if a.len() != len {
                return self.caught(Err(DeErr::Msg(format!(
                    "takes a list of exactly {len} items, not {}",
                    a.len()
                ))));
            }
        }
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeErr> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        match self.v.get_ref() {
            DeValue::Table(t) => {
                let r = visitor.visit_map(Table::new(&self, t, None));
                self.caught(r)
            }
            _ => {
                self.wrong("a table");
                visitor.visit_map(de::value::MapDeserializer::new(
                    std::iter::empty::<((), ())>(),
                ))
            }
        }
    }

    fn deserialize_struct<V: Visitor<'i>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeErr> {
        if serde_spanned::de::is_spanned(name) {
            let span = self.span();
            return visitor.visit_map(serde_spanned::de::SpannedDeserializer::new(self, span));
        }
        match self.v.get_ref() {
            DeValue::Table(t) => {
                let r = visitor.visit_map(Table::new(&self, t, Some(fields)));
                self.caught(r)
            }
            DeValue::Datetime(_) => self.toml().deserialize_any(visitor).map_err(toml_err),
            _ => {
                self.wrong("a table, like { key = value }");
                let r = visitor
                    .visit_map(de::value::MapDeserializer::new(
                        std::iter::empty::<((), ())>(),
                    ));
                self.caught(r)
            }
        }
    }

    fn deserialize_enum<V: Visitor<'i>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeErr> {
        let r = self
            .toml()
            .deserialize_enum(name, variants, visitor)
            .map_err(toml_err);
        self.caught(r)
    }

    fn deserialize_newtype_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeErr> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        visitor.visit_unit()
    }

    fn deserialize_unit<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        let r = self.toml().deserialize_unit(visitor).map_err(toml_err);
        self.caught(r)
    }

    fn deserialize_unit_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeErr> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_bytes<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_u128<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        let n = self.int(0, i128::MAX).unwrap_or(0);
        visitor.visit_u128(n as u128)
    }

    fn deserialize_i128<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeErr> {
        let n = self.int(i128::MIN, i128::MAX).unwrap_or(0);
        visitor.visit_i128(n)
    }
}

impl<'a, 'i> IntoDeserializer<'i, DeErr> for Val<'a, 'i> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// The entries of a table, unknown keys reported and left out.
struct Table<'a, 'i> {
    parent: &'a Val<'a, 'i>,
    entries: Vec<(
        &'a Spanned<std::borrow::Cow<'i, str>>,
        &'a Spanned<DeValue<'i>>,
    )>,
    next: usize,
}

impl<'a, 'i> Table<'a, 'i> {
    fn new(
        parent: &'a Val<'a, 'i>,
        t: &'a DeTable<'i>,
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        let dropped = parent.cx.dropped.borrow();
        let entries = t
            .iter()
            .filter(|(_, v)| !dropped.contains(&(v.span().start, v.span().end)))
            .filter(|(k, _)| match fields {
                Some(f) if !f.contains(&k.get_ref().as_ref()) => {
                    unknown(parent, k, f);
                    false
                }
                _ => true,
            })
            .collect();
        Table {
            parent,
            entries,
            next: 0,
        }
    }
}

fn unknown(parent: &Val<'_, '_>, k: &Spanned<std::borrow::Cow<'_, str>>, fields: &[&str]) {
    let key = k.get_ref().as_ref();
    let full = parent.full();
    let at = if full.is_empty() {
        " at the top of the file".to_string()
    } else {
        format!(" in [{full}]")
    };
    let near = fields
        .iter()
        .filter(|f| !f.starts_with('$'))
        .min_by_key(|f| distance(key, f))
        .filter(|f| distance(key, f) <= 2.max(key.len() / 3));
    let list = fields.join(", ");
    let help = match near {
        Some(n) => format!("did you mean `{n}`? The keys here are: {list}"),
        None => format!("the keys here are: {list}"),
    };
    parent.cx.report(
        Some(k.span()),
        format!("unknown key `{}`{at}", esc(key)),
        &help,
    );
}

/// Edit distance, for "did you mean"; keys are short.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

impl<'a, 'i> de::MapAccess<'i> for Table<'a, 'i> {
    type Error = DeErr;

    fn next_key_seed<K: DeserializeSeed<'i>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeErr> {
        let Some((k, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(Key {
            key: k.get_ref().as_ref(),
            span: k.span(),
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'i>>(&mut self, seed: V) -> Result<V::Value, DeErr> {
        let (k, v) = self.entries[self.next];
        self.next += 1;
        let child = self.parent.child(v, Some(k.get_ref().as_ref()), None);
        let r = seed.deserialize(child.clone());
        child.caught(r)
    }
}

/// The items of a list.
struct Seq<'a, 'i> {
    parent: &'a Val<'a, 'i>,
    items: &'a [Spanned<DeValue<'i>>],
    next: usize,
}

impl<'a, 'i> Seq<'a, 'i> {
    fn new(parent: &'a Val<'a, 'i>, a: &'a [Spanned<DeValue<'i>>]) -> Self {
        Seq {
            parent,
            items: a,
            next: 0,
        }
    }
}

impl<'a, 'i> de::SeqAccess<'i> for Seq<'a, 'i> {
    type Error = DeErr;

    fn next_element_seed<T: DeserializeSeed<'i>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeErr> {
        loop {
            let Some(v) = self.items.get(self.next) else {
                return Ok(None);
            };
            let n = self.next;
            self.next += 1;
            if self
                .parent
                .cx
                .dropped
                .borrow()
                .contains(&(v.span().start, v.span().end))
            {
                continue;
            }
            let child = self.parent.child(v, None, Some(n));
            let r = seed.deserialize(child.clone());
            return child.caught(r).map(Some);
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

/// A table's key, as a string or a `Spanned` string.
struct Key<'a> {
    key: &'a str,
    span: Span,
}

impl<'a> IntoDeserializer<'a, DeErr> for Key<'a> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'a, 'de> de::Deserializer<'de> for Key<'a> {
    type Error = DeErr;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeErr> {
        visitor.visit_str(self.key)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeErr> {
        if serde_spanned::de::is_spanned(name) {
            let key: String = self.key.to_string();
            return visitor.visit_map(serde_spanned::de::SpannedDeserializer::new(key, self.span));
        }
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 char str string seq
        bytes byte_buf map unit option newtype_struct
        ignored_any unit_struct tuple_struct tuple identifier enum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_finds_overlaps_by_binary_search() {
        let shape = Shape {
            errors: Vec::new(),
            stand_ins: vec![2..4, 10..10, 20..30],
        };
        for (span, want) in [
            (0..2, false),
            (0..3, true),
            (3..3, true),
            (4..9, false),
            (10..10, true),
            (9..11, true),
            (11..20, false),
            (25..26, true),
            (15..40, true),
            (30..31, false),
        ] {
            assert_eq!(shape.covers(&span), want, "{span:?}");
        }
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kidn", "kind"), 2);
        assert_eq!(distance("colour", "color"), 1);
        assert_eq!(distance("", "mtu"), 3);
    }
}
