//! `SharedList`: concurrent appends from several processes, growth far past the first 64 KiB
//! while another process reads, the basic API, items read as the wrong type, and a segment at
//! its maximum size.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use memspace::spawn::StartMethod;
use memspace::sync::Mutex;
use memspace::{Error, SegmentOptions, SharedList, inspect};
use memspace_testkit::{Removal, Running, flags};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Four writers at once

const WRITERS: u32 = 4;
const PER_WRITER: u32 = 10_000;
/// The value of the start flag that lets the writers go.
const GO: u32 = 1_000;

/// Says it is ready, waits for the start signal, then pushes `(worker, 0..PER_WRITER)`.
fn push_many((list, start, worker, parent): (SharedList<(u32, u32)>, Mutex<u32>, u32, u32)) {
    flags::add_to_flag(&start, 1);
    flags::child_wait_for_flag(&start, GO, parent);
    for seq in 0..PER_WRITER {
        list.push(&(worker, seq)).expect("push");
    }
}

fn four_processes_pushing_ten_thousand_items_each_lose_and_duplicate_nothing(method: StartMethod) {
    let list = SharedList::<(u32, u32)>::new().expect("create a list");
    let start = flags::new_flag();
    let parent = std::process::id();
    let mut writers: Vec<_> = (0..WRITERS)
        .map(|worker| {
            Running::start_by(
                method,
                push_many,
                (list.clone(), start.clone(), worker, parent),
            )
        })
        .collect();
    // Let them go together, so that their pushes interleave.
    for writer in &writers {
        flags::wait_for_flag(&start, 1, writer.pid());
    }
    while flags::read_flag(&start) < WRITERS {
        assert!(
            !writers.iter().any(Running::has_ended),
            "a writer ended before the start"
        );
        std::thread::yield_now();
    }
    flags::set_flag(&start, GO);
    for writer in &mut writers {
        writer.join().expect("a writer");
    }

    let items = list.to_vec().expect("read the list");
    assert_eq!(items.len(), (WRITERS * PER_WRITER) as usize, "{method}");
    // Every worker's items appear exactly once and in the order it pushed them: the next item
    // of worker `w` must be the one after its previous one.
    let mut next = vec![0u32; WRITERS as usize];
    for (position, &(worker, seq)) in items.iter().enumerate() {
        let expected = next
            .get_mut(worker as usize)
            .unwrap_or_else(|| panic!("{method}: item {position} names worker {worker}"));
        assert_eq!(
            seq, *expected,
            "{method}: item {position} of worker {worker} is out of order, lost or duplicated"
        );
        *expected += 1;
    }
    assert_eq!(next, vec![PER_WRITER; WRITERS as usize], "{method}");
    let switches = items.windows(2).filter(|w| w[0].0 != w[1].0).count();
    eprintln!("{method}: the writers' items alternate {switches} times");
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{method}: {report:?}");
}

memspace_testkit::per_mode! {
    four_processes_pushing_ten_thousand_items_each_lose_and_duplicate_nothing: fork, spawn;
}

// ---------------------------------------------------------------------------------------------
// Growth while another process reads

const GROWTH_ITEMS: u64 = 200_000;
const GROWTH_ROUNDS: u64 = 4;
/// Every this many items, one is a string over 1 MB.
const BIG_EVERY: u64 = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    index: u64,
    text: String,
}

/// Item `index` of the growth test: mostly short, every [`BIG_EVERY`]th over 1 MB, each
/// different, so that an item read from a wrong offset never passes for the right one.
fn record(index: u64) -> Record {
    let text = if index.is_multiple_of(BIG_EVERY) {
        let len = 1_100_000 + (index / BIG_EVERY) as usize * 4099;
        let mut text = String::with_capacity(len + 16);
        while text.len() < len {
            write!(text, "{index:x}.").expect("write to a String");
        }
        text
    } else {
        format!("item {index}")
    };
    Record { index, text }
}

/// Pushes the growth test's items in rounds; before each round after the first, waits until
/// the reader has read everything pushed so far, so that reading and growth interleave.
fn push_growing((list, progress, parent): (SharedList<Record>, Mutex<u32>, u32)) -> u64 {
    let per_round = GROWTH_ITEMS / GROWTH_ROUNDS;
    for round in 0..GROWTH_ROUNDS {
        let start = round * per_round;
        flags::child_wait_for_flag(&progress, start as u32, parent);
        for index in start..start + per_round {
            list.push(&record(index)).expect("push");
        }
    }
    list.segment().expect("in shared memory").size()
}

fn a_list_grows_far_past_64_kib_while_the_parent_reads_what_a_child_pushes(method: StartMethod) {
    let list = SharedList::<Record>::new().expect("create a list");
    let initial_size = list.segment().expect("in shared memory").size();
    assert_eq!(initial_size, 64 << 10, "a list starts at 64 KiB");
    let progress = flags::new_flag();
    let mut writer = Running::start_by(
        method,
        push_growing,
        (list.clone(), progress.clone(), std::process::id()),
    );
    let mut next = 0;
    let mut big_seen = 0;
    while next < GROWTH_ITEMS {
        match list.get(next) {
            Ok(Some(item)) => {
                // Compare cheaply first: building a big expected string for every item is slow.
                assert_eq!(item.index, next, "{method}: item {next}");
                if next.is_multiple_of(BIG_EVERY) {
                    big_seen += 1;
                    assert!(item.text.len() > 1_000_000, "{method}: item {next} is big");
                }
                assert_eq!(item, record(next), "{method}: item {next}");
                next += 1;
                if next % 1_000 == 0 || next == GROWTH_ITEMS {
                    flags::set_flag(&progress, next as u32);
                }
            }
            // The writer may have pushed the rest and ended after the miss: one more look, now
            // that no push can come, decides.
            Ok(None) if writer.has_ended() => assert!(
                matches!(list.get(next), Ok(Some(_))),
                "{method}: the writer ended with {} items, the reader at {next}",
                list.len().expect("len")
            ),
            Ok(None) => std::thread::yield_now(),
            Err(err) => panic!("{method}: reading item {next} while the list grows: {err}"),
        }
    }
    let writer_size = writer.join().expect("the writer");
    assert_eq!(big_seen, GROWTH_ITEMS / BIG_EVERY);
    assert_eq!(list.len().expect("len"), GROWTH_ITEMS);
    let final_size = list.segment().expect("in shared memory").size();
    assert_eq!(final_size, writer_size, "{method}: both see one size");
    assert!(
        final_size > 256 * initial_size,
        "{method}: the list grew far past its first 64 KiB (to {final_size} bytes)"
    );
    assert!(list.segment().expect("in shared memory").generation() > 0);
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{method}: {report:?}");
}

memspace_testkit::per_mode! {
    a_list_grows_far_past_64_kib_while_the_parent_reads_what_a_child_pushes: fork, spawn;
}

// ---------------------------------------------------------------------------------------------
// The API

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { radius: f64 },
    Polygon(Vec<(i32, i32)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    tags: Vec<String>,
    owner: Option<String>,
    shape: Shape,
    scores: BTreeMap<String, i64>,
    bytes: Vec<u8>,
}

fn job(id: u64) -> Job {
    Job {
        id,
        name: format!("job {id} ✓"),
        tags: (0..id % 4).map(|t| format!("t{t}")).collect(),
        owner: id.is_multiple_of(2).then(|| "alice".to_owned()),
        shape: match id % 3 {
            0 => Shape::Point,
            1 => Shape::Circle {
                radius: f64::from(id as u32) / 3.0,
            },
            _ => Shape::Polygon(vec![(0, 0), (id as i32, -1)]),
        },
        scores: [
            ("a".to_owned(), -i64::try_from(id).expect("a small id")),
            ("b".to_owned(), i64::MAX),
        ]
        .into_iter()
        .collect(),
        bytes: vec![0, 255, id as u8],
    }
}

#[test]
fn push_extend_get_iter_and_to_vec_agree() {
    let nums = SharedList::<i64>::new().expect("create a list");
    let _removal = Removal::of(nums.name());
    assert!(nums.is_empty().expect("is_empty"));
    assert_eq!(nums.len().expect("len"), 0);
    assert_eq!(nums.get(0).expect("get"), None);
    assert!(nums.iter().next().is_none());
    assert_eq!(nums.to_vec().expect("to_vec"), Vec::<i64>::new());

    nums.push(&0).expect("push");
    nums.extend([1, 2]).expect("extend by value");
    nums.extend([3, 4].iter()).expect("extend by reference");
    nums.extend(Vec::<i64>::new()).expect("extend with nothing");
    assert!(!nums.is_empty().expect("is_empty"));
    assert_eq!(nums.len().expect("len"), 5);
    for i in 0..5 {
        assert_eq!(nums.get(i).expect("get"), i64::try_from(i).ok());
    }
    assert_eq!(nums.get(5).expect("get past the end"), None);
    assert_eq!(nums.get(u64::MAX).expect("get far past the end"), None);
    assert_eq!(nums.to_vec().expect("to_vec"), [0, 1, 2, 3, 4]);
    let iterated: Vec<i64> = nums.iter().collect::<Result<_, _>>().expect("iter");
    assert_eq!(iterated, [0, 1, 2, 3, 4]);
    let by_ref: Vec<i64> = (&nums)
        .into_iter()
        .map(|item| item.expect("item"))
        .collect();
    assert_eq!(by_ref, iterated);

    // An iterator reaches items pushed while it runs; a clone is the same list.
    let mut items = nums.iter();
    for expected in 0..5 {
        assert_eq!(items.next().expect("an item").expect("readable"), expected);
    }
    let other_handle = nums.clone();
    other_handle.push(&5).expect("push through a clone");
    assert_eq!(items.next().expect("the new item").expect("readable"), 5);
    assert!(items.next().is_none());
    assert_eq!(nums.len().expect("len"), 6);
}

#[test]
fn structured_items_come_back_equal_through_another_handle() {
    let removal = Removal::fresh("jobs");
    let jobs = SharedList::<Job>::create(removal.name()).expect("create a list");
    let written: Vec<Job> = (0..300).map(job).collect();
    jobs.extend(&written).expect("extend");
    let reopened = SharedList::<Job>::open(removal.name()).expect("open the list");
    assert_eq!(reopened.name().as_str(), removal.name());
    assert_eq!(reopened.to_vec().expect("to_vec"), written);
    assert_eq!(reopened.get(299).expect("get"), Some(job(299)));
    // Odd values: empty strings, unit, extremes.
    let odd = SharedList::<(String, (), u64, i64, f64)>::new().expect("create a list");
    let _odd_removal = Removal::of(odd.name());
    let values = [
        (String::new(), (), 0, i64::MIN, f64::MIN_POSITIVE),
        ("\u{0}x".to_owned(), (), u64::MAX, i64::MAX, -0.0),
    ];
    odd.extend(&values).expect("extend");
    assert_eq!(odd.to_vec().expect("to_vec"), values);
}

#[test]
fn a_list_of_strings_read_as_numbers_is_a_decode_error_naming_the_index() {
    let removal = Removal::fresh("mismatch");
    let strings = SharedList::<String>::create(removal.name()).expect("create a list");
    strings
        .extend(["zero", "one"].map(str::to_owned))
        .expect("extend");
    let numbers = SharedList::<u64>::open(removal.name()).expect("open as numbers");
    assert_eq!(
        numbers.len().expect("len"),
        2,
        "the items are there, whatever their type"
    );

    match numbers.get(1) {
        Err(err @ Error::Decode { .. }) => {
            let Error::Decode {
                ref name,
                index,
                expected,
                ..
            } = err
            else {
                unreachable!()
            };
            assert_eq!(name.as_str(), removal.name());
            assert_eq!(index, 1);
            assert_eq!(expected, "u64");
            let message = err.to_string();
            assert!(
                message.contains("item 1") && message.contains(removal.name()),
                "the message names the item and the list: {message}"
            );
            assert!(
                std::error::Error::source(&err).is_some(),
                "the decoder's complaint is the source"
            );
        }
        other => panic!("expected Error::Decode for item 1, got {other:?}"),
    }
    assert!(
        matches!(numbers.to_vec(), Err(Error::Decode { index: 0, .. })),
        "to_vec stops at the first item"
    );
    assert!(matches!(
        numbers.iter().next(),
        Some(Err(Error::Decode { index: 0, .. }))
    ));
    // Nothing was damaged: the strings still read, and a number pushed through the other
    // handle is an item the string view cannot read.
    assert_eq!(strings.to_vec().expect("to_vec"), ["zero", "one"]);
    numbers.push(&7).expect("push a number");
    assert_eq!(numbers.get(2).expect("get"), Some(7));
    assert!(matches!(
        strings.get(2),
        Err(Error::Decode { index: 2, .. })
    ));
}

#[test]
fn a_list_at_its_maximum_size_reports_full_and_stays_usable_and_unchanged() {
    let removal = Removal::fresh("full");
    let max_size = 128 << 10;
    let list = SharedList::<String>::create_with(
        removal.name(),
        &SegmentOptions::new().max_size(max_size),
    )
    .expect("create a list");
    let chunk = |c: char| c.to_string().repeat(50_000);
    list.push(&chunk('a')).expect("the first chunk fits");
    list.push(&chunk('b'))
        .expect("the second chunk fits, after growing");
    assert_eq!(list.segment().expect("in shared memory").size(), max_size);

    let before = list.to_vec().expect("to_vec");
    let used = list.used_bytes();
    match list.push(&chunk('c')) {
        Err(err @ Error::Full { .. }) => {
            let Error::Full {
                ref name,
                needed,
                max_size: reported_max,
            } = err
            else {
                unreachable!()
            };
            assert_eq!(name.as_str(), removal.name());
            assert_eq!(reported_max, max_size);
            assert!(needed > max_size, "needed {needed}");
            assert!(err.to_string().contains(removal.name()), "{err}");
        }
        other => panic!("expected Error::Full, got {other:?}"),
    }
    assert_eq!(
        list.to_vec().expect("to_vec"),
        before,
        "a failed push changes nothing"
    );
    assert_eq!(list.used_bytes(), used);
    assert_eq!(list.segment().expect("in shared memory").size(), max_size);

    // Small items still fit, and `extend` keeps the items before the one that did not fit.
    list.push(&"small".to_owned()).expect("a small push");
    assert!(matches!(
        list.extend(["tiny".to_owned(), chunk('d')]),
        Err(Error::Full { .. })
    ));
    let mut expected = before;
    expected.extend(["small".to_owned(), "tiny".to_owned()]);
    assert_eq!(list.to_vec().expect("to_vec"), expected);
    let reopened = SharedList::<String>::open(removal.name()).expect("open");
    assert_eq!(reopened.to_vec().expect("to_vec"), expected);
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Growth in bounded steps

/// The most a growth commits beyond what the write in hand needs (`GROWTH_STEP`).
const GROWTH_STEP: u64 = 2 << 20;

#[test]
fn a_list_grows_in_spread_out_steps_of_at_most_2_mib_even_where_it_reserves_a_4_mib_index_block() {
    // Items 523 776 on go into index block 10, which holds 512 << 10 entries (4 MiB) and is
    // reserved whole by the push of its first item. The segment must already hold it then: no
    // growth commits more than one step, however large the range a push reserves, and the
    // steps that restore the room ahead afterwards are spread over the following pushes, not
    // taken one per push while other processes wait for the lock. (Each growth bumps the
    // generation, so the batches below tell how many growths their size change took.)
    const ITEMS: i64 = 600_000;
    const BATCH: i64 = 1_000;
    let removal = Removal::fresh("steps");
    let list = SharedList::<i64>::create(removal.name()).expect("create a list");
    let segment = list.segment().expect("in shared memory");
    let (mut size, mut generation) = (segment.size(), segment.generation());
    for batch in 0..ITEMS / BATCH {
        list.extend((batch * BATCH..(batch + 1) * BATCH).map(|i| i * 3))
            .expect("extend");
        let (now, now_generation) = (segment.size(), segment.generation());
        let growths = now_generation - generation;
        // From 8 MiB on the segment grows ahead of its writers (a smaller one grows when a
        // push needs more), and a batch of 24 KB takes at most one step.
        assert!(
            size < 8 << 20 || growths <= 1,
            "{growths} growths in the batch of pushes that ended at {} items",
            (batch + 1) * BATCH
        );
        assert!(
            now - size <= growths * GROWTH_STEP,
            "at {} items the segment grew from {size} to {now} bytes in {growths} growths",
            (batch + 1) * BATCH
        );
        (size, generation) = (now, now_generation);
    }
    assert_eq!(list.len().expect("len"), ITEMS as u64);
    // Committed ahead, but not far ahead: about twice what the list uses.
    let used = list.used_bytes();
    assert!(
        size <= 2 * used + GROWTH_STEP,
        "{size} bytes committed for {used} used"
    );
    assert_eq!(list.get(523_776).expect("get"), Some(523_776 * 3));
    let report = inspect::verify(segment);
    assert!(report.is_consistent(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// A read without the lock, stopped while the list shrinks under it

/// The list a reader of [`a_read_stopped_while_its_item_is_popped_reads_again`] opens.
const POPPED_LIST: &str = "MEMSPACE_LIST_TEST_LIST";
/// The index that reader reads.
const POPPED_INDEX: &str = "MEMSPACE_LIST_TEST_INDEX";

/// Readers stop inside a read without the lock, having read their item's index entry (the
/// offset of its record) and nothing of the record yet (failpoint `list.read_entry`), one
/// reader per item. Meanwhile every item is popped: the records stay where they were, whole
/// and with their checksums, but no item is left. A reader that copied the record its entry
/// named would return an item the list no longer has; each must see that the list changed
/// under it, read again, and find nothing.
#[test]
fn a_read_stopped_while_its_item_is_popped_reads_again() {
    const ITEMS: u64 = 12;
    if memspace_testkit::roles::role().as_deref() == Some("reader") {
        let list = SharedList::<String>::open(&std::env::var(POPPED_LIST).expect("list name"))
            .expect("open the list");
        let index: u64 = std::env::var(POPPED_INDEX)
            .expect("index")
            .parse()
            .expect("an index");
        assert_eq!(list.get(index).expect("get"), None, "item {index}");
        return;
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("popped");
    let list = SharedList::<String>::create(name.name()).expect("create");
    for index in 0..ITEMS {
        list.push(&format!("item {index}")).expect("push");
    }
    let mut readers: Vec<_> = (0..ITEMS)
        .map(|index| {
            let mut reader = memspace_testkit::roles::child_in_role(
                "reader",
                &[
                    (POPPED_LIST, name.name()),
                    (POPPED_INDEX, &index.to_string()),
                    ("MEMSPACE_FAILPOINT", "list.read_entry"),
                ],
            );
            reader.wait_until_stopped("list.read_entry");
            reader
        })
        .collect();
    for _ in 0..ITEMS {
        list.pop().expect("pop").expect("an item");
    }
    for reader in &readers {
        reader.resume();
    }
    for (index, reader) in readers.iter_mut().enumerate() {
        let status = reader.wait();
        assert!(
            status.success(),
            "the reader of item {index} failed: {status}"
        );
    }
    assert_eq!(list.len().expect("len"), 0);
}
