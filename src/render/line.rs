//! Spans and lines: what every dialect writes.
//!
//! A line is a prefix and a list of spans (plain text, bold, inline code, coloured text,
//! a link). Every construct opens and closes inside one span, so cutting a message between
//! lines can never leave a backtick, a `**` or a `<font>` open, and shrinking a span
//! (cutting its text, adding "…") can never break one.

use sentinel_actors::Severity;

use super::dialect::Dialect;
use super::escape::cut_bytes;

/// The tone of a coloured span (WeCom markdown's `<font color>` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Color {
    Warning,
    Comment,
    Info,
}

impl Color {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Color::Warning => "warning",
            Color::Comment => "comment",
            Color::Info => "info",
        }
    }

    /// The tone of a severity: warnings and worse stand out, information does not.
    pub(crate) fn of(s: Severity) -> Color {
        match s {
            Severity::Critical | Severity::Warning => Color::Warning,
            Severity::Info => Color::Comment,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Span {
    /// Our own wording; never cut.
    Fixed(String),
    /// A separator, shown only between two non-empty spans.
    Sep(&'static str),
    /// Escaped text.
    Text(String),
    Strong(String),
    Code(String),
    Font(Color, String),
    /// A link: its label (our wording) and an address already checked to be safe in a
    /// markdown link ([`valid_base_url`](super::valid_base_url), percent-encoded
    /// segments). Never cut.
    Link(&'static str, String),
}

impl Span {
    pub(crate) fn content(&self) -> &str {
        match self {
            Span::Fixed(s) | Span::Text(s) | Span::Strong(s) | Span::Code(s) | Span::Font(_, s) => {
                s
            }
            Span::Sep(s) => s,
            Span::Link(_, u) => u,
        }
    }

    fn render(&self, d: &dyn Dialect, out: &mut String) {
        match self {
            Span::Fixed(s) | Span::Text(s) => d.text(s, out),
            Span::Sep(s) => d.text(s, out),
            Span::Link(label, url) => d.link(label, url, out),
            _ if self.content().is_empty() => {}
            Span::Strong(s) => d.strong(s, out),
            Span::Code(s) => d.code(s, out),
            Span::Font(c, s) => d.font(*c, s, out),
        }
    }

    /// User text that may be cut; our own wording (fixed text, markers) is never cut.
    pub(crate) fn shrinkable(&self) -> bool {
        matches!(self, Span::Text(_) | Span::Strong(_) | Span::Code(_))
            && !self.content().is_empty()
    }

    pub(crate) fn cut_to(&mut self, max: usize) {
        match self {
            Span::Text(s) | Span::Strong(s) | Span::Code(s) => *s = cut_bytes(s, max),
            Span::Fixed(_) | Span::Sep(_) | Span::Font(..) | Span::Link(..) => {}
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Line {
    pub(crate) prefix: String,
    pub(crate) spans: Vec<Span>,
}

impl Line {
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Line {
            prefix: prefix.into(),
            spans: Vec::new(),
        }
    }

    pub(crate) fn sep(mut self, s: &'static str) -> Self {
        self.spans.push(Span::Sep(s));
        self
    }

    pub(crate) fn fixed(mut self, s: impl Into<String>) -> Self {
        self.spans.push(Span::Fixed(s.into()));
        self
    }

    pub(crate) fn span(mut self, s: Span) -> Self {
        self.spans.push(s);
        self
    }

    /// `items` as spans made by `span`, `sep` between them.
    pub(crate) fn list<T>(
        mut self,
        items: impl IntoIterator<Item = T>,
        sep: &'static str,
        span: impl Fn(T) -> Span,
    ) -> Self {
        for (k, x) in items.into_iter().enumerate() {
            if k > 0 {
                self = self.sep(sep);
            }
            self = self.span(span(x));
        }
        self
    }

    pub(crate) fn has_content(&self) -> bool {
        self.spans
            .iter()
            .any(|s| !matches!(s, Span::Sep(_)) && !s.content().is_empty())
    }

    pub(crate) fn render(&self, d: &dyn Dialect) -> String {
        let mut out = String::new();
        d.text(&self.prefix, &mut out);
        let mut seen = false;
        for (k, s) in self.spans.iter().enumerate() {
            if let Span::Sep(sep) = s {
                let next = self.spans[k + 1..]
                    .iter()
                    .find(|s| !matches!(s, Span::Sep(_)));
                if seen && next.is_some_and(|n| !n.content().is_empty()) {
                    out.push_str(sep);
                }
                continue;
            }
            seen |= !s.content().is_empty();
            s.render(d, &mut out);
        }
        out
    }
}

/// Lines as one text, one line per line.
pub(crate) fn render_lines(lines: &[Line], d: &dyn Dialect) -> String {
    lines
        .iter()
        .map(|l| l.render(d))
        .collect::<Vec<_>>()
        .join("\n")
}
