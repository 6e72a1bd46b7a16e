//! The JSON log format's span fields, written straight into their JSON object.
//!
//! The `fmt` layer renders a span's fields when the span is made, whether or not anything is ever logged in it,
//! and every request has a span (`http::observe`). tracing-subscriber's `JsonFields` collects the fields into a
//! map of `serde_json::Value`s and serialises it, which took a tenth of a cached page's instructions
//! (callgrind, benches/README.md "Layers around every route"). This writes the same object (string, number and
//! boolean fields, `Debug` and `Display` values as strings) field by field. The JSON event formatter parses it
//! back into a map when a line is logged inside the span, so the lines are the same as with `JsonFields`.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{format::Writer, FormatFields, FormattedFields},
};

/// Span fields as one JSON object (see the module).
#[derive(Debug, Default)]
pub struct JsonSpanFields;

impl<'w> FormatFields<'w> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut object = Object::new(&mut writer);
        fields.record(&mut object);
        object.finish()
    }

    /// Fields recorded later (`Span::record`, which dukasync does not use on hot paths): the object is parsed,
    /// merged and written again, the later value of a name winning, as `JsonFields` does.
    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let mut added = String::new();
        let mut object = Object::new(&mut added);
        fields.record(&mut object);
        object.finish()?;
        let mut merged: serde_json::Map<String, serde_json::Value> = match current.fields.as_str() {
            "" => serde_json::Map::new(),
            text => serde_json::from_str(text).map_err(|_| fmt::Error)?,
        };
        let added: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&added).map_err(|_| fmt::Error)?;
        merged.extend(added);
        current.fields = serde_json::to_string(&merged).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

/// Writes `{"name":value,...}` as fields are visited; the first error is kept and returned by `finish`.
struct Object<'a> {
    out: &'a mut dyn Write,
    empty: bool,
    result: fmt::Result,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Object {
            out,
            empty: true,
            result: Ok(()),
        }
    }

    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut dyn Write) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.empty { '{' } else { ',' };
        self.empty = false;
        let out = &mut *self.out;
        self.result = (|| {
            out.write_char(separator)?;
            write_string(out, format_args!("{}", field.name()))?;
            out.write_char(':')?;
            value(out)
        })();
    }

    fn finish(self) -> fmt::Result {
        self.result?;
        self.out.write_str(if self.empty { "{}" } else { "}" })
    }
}

/// `value` as a JSON string: quoted, with `"`, `\` and control characters escaped as serde_json does.
fn write_string(out: &mut dyn Write, value: fmt::Arguments<'_>) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_fmt(value)?;
    out.write_char('"')
}

struct Escaped<'a>(&'a mut dyn Write);

impl Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Mostly nothing to escape (methods, routes, ids): written whole.
        if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return self.0.write_str(text);
        }
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..at])?;
            match escape {
                "" => write!(self.0, "\\u{byte:04x}")?,
                escape => self.0.write_str(escape)?,
            }
            plain = at + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

impl Visit for Object<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json: a number when finite, else null.
        self.entry(field, |out| match value.is_finite() {
            true => write!(out, "{}", serde_json::Value::from(value)),
            false => out.write_str("null"),
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_string(out, format_args!("{value}")));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| write_string(out, format_args!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::format::JsonFields;

    /// The fields of one span, rendered by `format`.
    fn rendered<F>(format: F, record: impl FnOnce()) -> String
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::{layer::SubscriberExt, registry::LookupSpan, Layer};
        let seen = Arc::new(Mutex::new(String::new()));
        struct Grab<F>(Arc<Mutex<String>>, std::marker::PhantomData<F>);
        impl<S, F> Layer<S> for Grab<F>
        where
            S: tracing::Subscriber + for<'l> LookupSpan<'l>,
            F: for<'w> FormatFields<'w> + 'static,
        {
            fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
                let span = ctx.span(&id).unwrap();
                let fields = span.extensions().get::<FormattedFields<F>>().unwrap().fields.clone();
                *self.0.lock().unwrap() = fields;
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(format)
                    .with_writer(std::io::sink),
            )
            .with(Grab::<F>(seen.clone(), std::marker::PhantomData));
        tracing::subscriber::with_default(subscriber, record);
        let fields = seen.lock().unwrap().clone();
        fields
    }

    fn spans() -> impl Fn() {
        || {
            let text = "GET \"quoted\" back\\slash\nnew line \u{1} and ünïcode";
            let span = tracing::info_span!(
                "request",
                method = %text,
                route = "/v1/scopes/{scope}/changes",
                debug = ?Some("x"),
                n = -3i64,
                u = 7u64,
                yes = true,
                f = 1.5f64,
                nan = f64::NAN,
                later = tracing::field::Empty,
            );
            span.record("later", "recorded after");
            span.record("n", 4i64);
            drop(span);
        }
    }

    #[test]
    fn the_object_is_the_one_json_fields_writes() {
        let ours: serde_json::Value = serde_json::from_str(&rendered(JsonSpanFields, spans())).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&rendered(JsonFields::new(), spans())).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours["n"], 4, "a later value wins");
        assert_eq!(ours["later"], "recorded after");
        assert!(ours["method"].as_str().unwrap().contains("\"quoted\""));
    }

    #[test]
    fn a_span_without_fields_is_an_empty_object() {
        let fields = rendered(JsonSpanFields, || drop(tracing::info_span!("bare")));
        assert_eq!(fields, "{}");
    }
}
