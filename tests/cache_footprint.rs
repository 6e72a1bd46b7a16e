//! The in-process cache charges a feed window its estimated heap.
//!
//! A counting allocator measures what building a realistic window really allocates; the estimate must be at
//! least that (so the cache's budget bounds resident memory) and not wildly more (so it still caches).
//! Row data is kept as JSON text (the window holds its changes rendered as a page writes them): when it was a
//! parsed `serde_json::Value` tree, a window took several times its JSON (the benchmark measured 23 MiB charged
//! holding 190 MiB); now it takes less than twice.

// The counting allocator wraps the system allocator: the one place the project implements an unsafe trait.
#![allow(unsafe_code)]

use dukasync::{feed::windows::Window, store::changes::LoggedChange};
use serde_json::json;
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations are counted: only the test's own, while it builds the window. The
    /// harness's other threads allocate when they please (a CI run once counted 900 bytes more than the window
    /// took); a `const` cell, so reading it never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCATED.fetch_add(layout.size(), Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            ALLOCATED.fetch_sub(layout.size(), Relaxed);
        }
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCATED.fetch_add(new_size, Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The rows a sale leaves in the feed, as the benchmark's data set writes them.
fn sale_json(n: usize) -> Vec<(String, String, String)> {
    let sale = format!("sale-{n}");
    let amount = format!("{}.00", 20 + n % 2000);
    let product = format!("item-{:04}", n % 2000);
    vec![
        ("sales".into(), sale.clone(), json!({"id": sale, "sold_at": "2026-11-25T09:30:00+03:00", "status": "completed",
            "total": amount, "lines": [{"product_id": product, "quantity": "1", "unit_price": amount, "amount": amount}],
            "payments": [{"method": "cash", "amount": amount}]}).to_string()),
        ("journal_entries".into(), format!("{sale}-je"), json!({"id": format!("{sale}-je"), "source": format!("sales/{sale}"),
            "lines": [{"account": "1000", "debit": amount, "credit": "0.00"},
                      {"account": "4000", "debit": "0.00", "credit": amount}]}).to_string()),
        ("stock_levels".into(), product.clone(), json!({"id": product, "product_id": product, "quantity": "990"}).to_string()),
    ]
}

#[test]
fn a_window_is_charged_at_least_what_it_allocates() {
    let rows: Vec<(String, String, String)> = (0..86).flat_map(sale_json).take(256).collect();
    let json_len: usize = rows.iter().map(|r| r.2.len()).sum();

    COUNTED.with(|c| c.set(true));
    let before = ALLOCATED.load(Relaxed);
    let mut changes = Vec::with_capacity(rows.len());
    for (i, (collection, key, data)) in rows.iter().enumerate() {
        changes.push(LoggedChange {
            version: i as i64 + 1,
            collection: collection.clone(),
            key: key.clone(),
            data: Some(serde_json::value::RawValue::from_string(data.clone()).unwrap()),
            tag: 7,
        });
    }
    let size = changes.len() as i64;
    let window = Box::new(Window::from_rows(1, size, changes).unwrap());
    let allocated = ALLOCATED.load(Relaxed) - before;
    COUNTED.with(|c| c.set(false));
    let estimate = window.resident_bytes();

    assert!(
        estimate >= allocated,
        "estimate {estimate} below the {allocated} bytes allocated"
    );
    assert!(
        estimate <= allocated * 2,
        "estimate {estimate} more than twice the {allocated} bytes allocated"
    );
    // Text, not a tree: the window costs less than twice its JSON.
    assert!(allocated < json_len * 2, "JSON {json_len} vs allocated {allocated}");
}
