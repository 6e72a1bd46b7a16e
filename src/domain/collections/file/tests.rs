use super::*;

/// The built-in server collections, declared correctly, so a test adds only what it is about.
fn with_built_ins(extra: &str) -> String {
    let mut text = String::from(extra);
    for name in BUILT_IN_SERVER {
        text.push_str(&format!(
            "\n[[collection]]\nname = \"{name}\"\nwriter = \"server\"\nconflict_policy = \"server_wins\"\n"
        ));
    }
    text
}

#[test]
fn the_built_in_file_is_valid_and_keeps_todays_rights() {
    let set = parse(DEFAULT).expect("built-in file");
    let products = set.iter().find(|c| c.name == "products").expect("products");
    assert_eq!(products.writer, Writer::Device);
    assert!(products.reference);
    assert_eq!(products.rights.create, &[Role::Owner, Role::Manager]);
    assert!(products.schema.is_some());
    let customers = set.iter().find(|c| c.name == "customers").expect("customers");
    assert_eq!(customers.conflict_policy, ConflictPolicy::ClientWins);
    assert!(customers.rights.delete.contains(&Role::Cashier));
    assert_eq!(
        set.iter().find(|c| c.name == "sales").map(|c| c.writer),
        Some(Writer::Server)
    );
}

#[test]
fn a_new_device_collection_with_indexes_and_a_schema_loads() {
    let text = with_built_ins(
        r#"
[[collection]]
name = "deliveries"
key = "id"
writer = "device"
rights = { create = ["owner"], update = ["owner", "cashier"], delete = [] }
conflict_policy = "client_wins"
indexes = ["driver_id", "[route+day]", "address.city"]
schema = { type = "object", required = ["driver_id"] }
"#,
    );
    let set = parse(&text).expect("valid");
    let d = &set[0];
    assert_eq!(d.name, "deliveries");
    assert_eq!(d.indexes, &["driver_id", "[route+day]", "address.city"]);
    assert!(d.rights.allows(Role::Cashier, super::super::WriteKind::Update));
    assert!(!d.rights.allows(Role::Cashier, super::super::WriteKind::Create));
    let schema = d.schema.expect("schema");
    assert!(schema
        .violation(&serde_json::json!({"id": "a", "driver_id": "x"}))
        .is_none());
    let (path, _) = schema.violation(&serde_json::json!({"id": "a"})).expect("violation");
    assert_eq!(path, "");
}

#[test]
fn every_mistake_is_listed_one_line_each() {
    let text = with_built_ins(
        r#"
colour = "blue"

[[collection]]
name = "Bad Name"
writer = "device"
rights = { create = ["owner"], update = ["boss"], delete = ["backend"], modify = [] }
conflict_policy = "last_wins"
indexs = ["x"]

[[collection]]
name = "orders"
key = "order_no"
writer = "backend"
rights = { create = [], update = [], delete = [] }
conflict_policy = "server_wins"
indexes = ["id", "a b", "total", "total"]
schema = { type = "no-such-type" }

[[collection]]
name = "orders"
writer = "device"
conflict_policy = "manual"
reference = "yes"
"#,
    )
    .replace(
        "name = \"journal_entries\"\nwriter = \"server\"",
        "name = \"journal_entries\"\nwriter = \"device\"",
    )
    .replace("name = \"stock_levels\"", "name = \"stock_level\"");
    let lines = parse(&text).expect_err("invalid");
    let expected = [
        "unknown top-level key `colour` (expected only [[collection]] tables)",
        "collection 1 (`Bad Name`): unknown key `indexs` (known: name, key, writer, rights, conflict_policy, reference, indexes, schema)",
        "collection 1 (`Bad Name`): name `Bad Name` must be lowercase letters, digits and `_`, start with a letter, and not start with `local_`",
        "collection 1 (`Bad Name`): `conflict_policy` must be one of \"server_wins\", \"client_wins\", \"manual\", not \"last_wins\"",
        "collection 1 (`Bad Name`): unknown key `rights.modify` (known: create, update, delete)",
        "collection 1 (`Bad Name`): `rights.update`: unknown role \"boss\" (owner, manager or cashier)",
        "collection 1 (`Bad Name`): `rights.delete`: `backend` is not a device role (the backend writes any collection with writer \"device\" or \"backend\")",
        "collection 2 (`orders`): `key` must be \"id\" (rows are keyed by their `id` field), not \"order_no\"",
        "collection 2 (`orders`): `rights` applies only to writer \"device\": devices do not write this collection",
        "collection 2 (`orders`): index `id` is the key, which is always indexed",
        "collection 2 (`orders`): index \"a b\" must be a field path (`name`, `address.city`) or a compound `[a+b]`",
        "collection 2 (`orders`): index `total` listed twice",
        "collection 3 (`orders`): `reference` must be true or false",
        "collection 3 (`orders`): writer \"device\" needs `rights` (roles per create, update, delete)",
        "built-in collection `stock_levels` is missing: the server's commands write it, so declare it with writer = \"server\"",
        "built-in collection `journal_entries` must have writer = \"server\": only the server's commands write it",
    ];
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "missing line: {line}\ngot:\n{}",
            lines.join("\n")
        );
    }
    let schema_line = "collection 2 (`orders`): `schema` is not a valid JSON Schema (draft 2020-12): ";
    assert!(lines.iter().any(|l| l.starts_with(schema_line)), "{}", lines.join("\n"));
    // Also refused: the second `orders` only because its own mistakes keep it out; `journal_entries` as device
    // lacks rights. Nothing else: every line above is one mistake.
    assert_eq!(lines.len(), expected.len() + 2, "{}", lines.join("\n"));
    assert!(lines.iter().all(|l| !l.contains('\n')));
}

#[test]
fn a_duplicate_name_and_broken_toml_are_refused() {
    let dup = with_built_ins("").replace("name = \"expenses\"", "name = \"sales\"");
    let lines = parse(&dup).expect_err("duplicate");
    assert!(
        lines.contains(&"collection 4 (`sales`): declared twice".to_string()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("built-in collection `expenses` is missing")),
        "{lines:?}"
    );
    let lines = parse("[[collection]\nname = ").expect_err("syntax");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("not valid TOML: "), "{lines:?}");
}
