//! Named parameters for the large statements (the log write and the replay batch's single write): their SQL
//! says `$entry_ids`, not `$18`. The names are numbered once, in the order of the statement's name list, when
//! the statement is built, and a [`Binder`] binds values by name in that same order, so the SQL, the numbers
//! and the binds cannot drift apart: a mismatch panics the first time the statement is built or bound, which
//! every test that writes does.

use sqlx::{Encode, Postgres, Type};

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// `sql` with each `$name` replaced by `$n`, n being the name's position in `names` (from 1).
///
/// Panics if `sql` names a parameter that `names` lacks, or leaves one of `names` unused: the statement is a
/// constant, so this is a bug in the code, found by any test that runs it.
pub(crate) fn numbered(sql: &str, names: &[&str]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut used = vec![false; names.len()];
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        let Some(index) = names.iter().position(|n| *n == name) else {
            panic!("statement names parameter `${name}`, which is not in its list");
        };
        used[index] = true;
        out.push_str(&format!("${}", index + 1));
        rest = &after[len..];
    }
    out.push_str(rest);
    if let Some(unused) = used.iter().position(|u| !u) {
        panic!(
            "parameter `{}` is in the statement's list but not in its SQL",
            names[unused]
        );
    }
    out
}

/// Binds a statement's parameters by name, in the order of the list it was [`numbered`] with.
pub(crate) struct Binder<'q> {
    query: PgQuery<'q>,
    names: &'q [&'static str],
    next: usize,
}

impl<'q> Binder<'q> {
    pub fn new(query: PgQuery<'q>, names: &'q [&'static str]) -> Self {
        Binder { query, names, next: 0 }
    }

    /// Binds the next parameter, which must be `name`.
    pub fn bind<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(mut self, name: &str, value: T) -> Self {
        assert_eq!(
            self.names.get(self.next).copied(),
            Some(name),
            "parameter bound out of the statement's order"
        );
        self.query = self.query.bind(value);
        self.next += 1;
        self
    }

    /// The query, every parameter bound.
    pub fn finish(self) -> PgQuery<'q> {
        assert_eq!(
            self.next,
            self.names.len(),
            "parameter `{}` left unbound",
            self.names.get(self.next).copied().unwrap_or_default()
        );
        self.query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_in_list_order_wherever_they_stand() {
        assert_eq!(
            numbered("SELECT $b, $a::text[], $b + 1", &["a", "b"]),
            "SELECT $2, $1::text[], $2 + 1"
        );
    }

    #[test]
    #[should_panic(expected = "`$c`, which is not in its list")]
    fn an_unknown_name_is_a_bug() {
        numbered("SELECT $c", &["c_"]);
    }

    #[test]
    #[should_panic(expected = "`b` is in the statement's list but not in its SQL")]
    fn an_unused_name_is_a_bug() {
        numbered("SELECT $a", &["a", "b"]);
    }

    #[test]
    #[should_panic(expected = "out of the statement's order")]
    fn binding_out_of_order_is_a_bug() {
        Binder::new(sqlx::query("SELECT $1, $2"), &["a", "b"]).bind("b", 1_i64);
    }

    #[test]
    #[should_panic(expected = "`b` left unbound")]
    fn a_missing_bind_is_a_bug() {
        let _ = Binder::new(sqlx::query("SELECT $1, $2"), &["a", "b"])
            .bind("a", 1_i64)
            .finish();
    }
}
