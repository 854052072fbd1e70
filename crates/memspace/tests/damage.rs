//! Writes into damaged segments. A peer (or a stray tool) that changes an offset, a length or an
//! end of data in a collection's control words must not be able to steer a writer: every write
//! through a damaged field is an `Error::Corrupt` naming it, the control page (header, lock,
//! table of users) is left as it was, and the segment does not grow.
//!
//! Each test damages one field with a raw write to the segment's file, as a hostile peer
//! would, while a handle to the collection is open.

use memspace::collections::{Queue, QueueError, SharedMap, SharedVec, Value};
use memspace::{Error, SegmentOptions, SharedList};
use memspace_testkit::names::SegmentFile;
use memspace_testkit::{Removal, Watchdog};

/// Where a collection's own control words start (`segment/header.rs`).
const KIND_AREA: u64 = 2304;
/// The list's words: `len`, `tail`, then the offsets of its index blocks.
const LIST_LEN: u64 = KIND_AREA;
const LIST_TAIL: u64 = KIND_AREA + 8;
const LIST_BLOCKS: u64 = KIND_AREA + 16;

/// A segment's backing file, to damage and to watch.
struct Backing {
    file: SegmentFile,
}

impl Backing {
    fn of(name: &Removal) -> Self {
        Backing { file: name.file() }
    }

    fn read_u64(&self, at: u64) -> u64 {
        self.file.read_u64(at)
    }

    fn write_u64(&self, at: u64, value: u64) {
        self.file.write_u64(at, value);
    }

    /// The header, the lock slot, the segment's metadata and its table of users: everything
    /// in the control page before the collection's own words.
    fn control_page(&self) -> Vec<u8> {
        self.file
            .read(0, usize::try_from(KIND_AREA).expect("small"))
    }

    fn size(&self) -> u64 {
        self.file.len()
    }

    /// Runs `write`, which must fail as damage naming `field`, and checks that it changed
    /// nothing in the control page and did not grow the file.
    fn refuses<T: std::fmt::Debug>(
        &self,
        what: &str,
        field: &str,
        write: impl FnOnce() -> Result<T, Error>,
    ) {
        let control = self.control_page();
        let size = self.size();
        let outcome = write();
        assert!(
            matches!(&outcome, Err(err @ Error::Corrupt { .. }) if err.to_string().contains(field)),
            "{what}: expected damage naming `{field}`, got {outcome:?}"
        );
        assert!(
            self.control_page() == control,
            "{what}: the write changed the control page"
        );
        assert_eq!(self.size(), size, "{what}: the write grew the segment");
    }
}

/// A queue's result as a plain one: damage is reported as `QueueError::Other`.
fn other<T>(outcome: Result<T, QueueError>) -> Result<T, Error> {
    outcome.map_err(|err| match err {
        QueueError::Other(err) => err,
        unexpected => panic!("expected damage to be reported, got {unexpected:?}"),
    })
}

/// A list named after `tag` holding three items, and its backing file; the name goes with
/// them, to remove the list on drop.
fn list_with_items(tag: &str) -> (Removal, SharedList<String>, Backing) {
    let name = Removal::fresh(tag);
    let list = SharedList::<String>::create(name.name()).expect("create");
    list.extend(["a", "b"].map(String::from)).expect("extend");
    // The last change a single push: a handle's next push then takes the list as its last
    // push left it, unless the words that push checked moved (damage included).
    list.push(&"c".to_owned()).expect("push");
    let backing = Backing::of(&name);
    (name, list, backing)
}

#[test]
fn a_list_index_block_pointing_into_the_header_is_refused_before_the_push_writes() {
    let _dog = Watchdog::start();
    let (_name, list, backing) = list_with_items("damage-list-header");
    // With 3 items the next entry is the block's 4th: the block at 16 puts it at 40, the
    // header's generation field; at 104, on the lock word at 128.
    for (block, target) in [(16, "the generation field"), (104, "the lock word")] {
        backing.write_u64(LIST_BLOCKS, block);
        backing.refuses(&format!("index block at {block}"), "index block 0", || {
            list.push(&"d".to_owned())
        });
        assert_eq!(backing.read_u64(40), 0, "{target}: generation changed");
    }
    // Anywhere else outside the data area, or misaligned, is refused as well.
    for block in [4095, 4097, !7, 1 << 40] {
        backing.write_u64(LIST_BLOCKS, block);
        backing.refuses(&format!("index block at {block}"), "index block 0", || {
            list.push(&"d".to_owned())
        });
        assert!(list.get(0).is_err(), "a read follows the block at {block}");
    }
}

#[test]
fn a_list_end_of_data_at_two_gib_does_not_grow_the_segment() {
    let _dog = Watchdog::start();
    let (_name, list, backing) = list_with_items("damage-list-tail");
    let tail = backing.read_u64(LIST_TAIL);
    // 2 GiB: below the default maximum size, far past the committed size. Then the other
    // impossible ends of data: inside the control page, before the published items, unaligned.
    for damaged in [2 << 30, 0, 128, tail - 8, tail + 1, u64::MAX] {
        backing.write_u64(LIST_TAIL, damaged);
        backing.refuses(&format!("end of data {damaged}"), "end of data", || {
            list.push(&"d".to_owned())
        });
    }
    backing.write_u64(LIST_TAIL, tail);
    list.push(&"d".to_owned()).expect("push once repaired");
    assert_eq!(list.to_vec().expect("read"), ["a", "b", "c", "d"]);
}

#[test]
fn a_list_length_beyond_its_index_blocks_does_not_reserve_a_block() {
    let _dog = Watchdog::start();
    let (_name, list, backing) = list_with_items("damage-list-len");
    // The first item of index block 10 (4 MiB of entries): blocks 1 to 9 were never reserved.
    // Then lengths in blocks that do not exist, and the largest ones.
    for len in [512 * 1023, 512 * 1023 + 5, 600, u64::MAX - 1, u64::MAX] {
        backing.write_u64(LIST_LEN, len);
        backing.refuses(&format!("length {len}"), "claims", || {
            list.push(&"d".to_owned())
        });
    }
}

#[test]
fn a_last_entry_pointing_at_the_end_of_data_is_refused_before_the_push_writes() {
    let _dog = Watchdog::start();
    let (_name, list, backing) = list_with_items("damage-list-entry");
    // The third item's entry, in index block 0, pointed at the end of data: zero bytes there
    // read as an empty record whose checksum holds, which the next push would write over.
    let block = backing.read_u64(LIST_BLOCKS);
    let tail = backing.read_u64(LIST_TAIL);
    let entry = block + 8 * 2;
    let record = backing.read_u64(entry);
    backing.write_u64(entry, tail);
    backing.refuses("the last entry at the end of data", "end of data", || {
        list.push(&"d".to_owned())
    });
    backing.write_u64(entry, record);
    list.push(&"d".to_owned()).expect("push once repaired");
    assert_eq!(list.to_vec().expect("read"), ["a", "b", "c", "d"]);
}

#[test]
fn a_vec_length_past_the_segment_does_not_grow_it_or_overflow() {
    let _dog = Watchdog::start();
    let name = Removal::fresh("damage-vec");
    let vec = SharedVec::<u64>::create(name.name()).expect("create");
    vec.extend_from_slice(&[1, 2, 3]).expect("push");
    let backing = Backing::of(&name);
    // 64 MiB of elements, below the maximum size; then lengths whose arithmetic overflows.
    for len in [8 << 20, u64::MAX / 8, u64::MAX - 1, u64::MAX] {
        backing.write_u64(KIND_AREA, len);
        backing.refuses(&format!("length {len}"), "elements", || vec.push(4));
        assert!(vec.as_slice().is_err(), "a slice of {len} elements");
    }
    backing.write_u64(KIND_AREA, 3);
    vec.push(4).expect("push once repaired");
    assert_eq!(vec.to_vec().expect("read"), [1, 2, 3, 4]);
}

#[test]
fn a_map_table_or_end_of_data_outside_the_data_area_is_refused() {
    let _dog = Watchdog::start();
    let name = Removal::fresh("damage-map");
    let map = SharedMap::<String, u64>::create(name.name()).expect("create");
    map.insert(&"a".to_owned(), &1).expect("insert");
    let backing = Backing::of(&name);
    let (table, tail) = (
        backing.read_u64(KIND_AREA),
        backing.read_u64(KIND_AREA + 32),
    );
    // A table of 16 slots (log2 = 4 in the low bits) on the lock word, or past the segment.
    for damaged in [128 | 4, (1 << 30) | 4, !63 | 4] {
        backing.write_u64(KIND_AREA, damaged);
        backing.refuses(&format!("table word {damaged:#x}"), "table", || {
            map.insert(&"b".to_owned(), &2)
        });
    }
    backing.write_u64(KIND_AREA, table);
    for damaged in [2 << 30, 64, tail + 4, u64::MAX] {
        backing.write_u64(KIND_AREA + 32, damaged);
        backing.refuses(&format!("end of data {damaged}"), "end of data", || {
            map.insert(&"b".to_owned(), &2)
        });
    }
    backing.write_u64(KIND_AREA + 32, tail);
    map.insert(&"b".to_owned(), &2)
        .expect("insert once repaired");
    assert_eq!(map.get(&"a".to_owned()).expect("get"), Some(1));
}

#[test]
fn a_queue_ring_outside_the_data_area_or_exhausted_sequence_numbers_are_refused() {
    let _dog = Watchdog::start();
    let name = Removal::fresh("damage-queue");
    let options = SegmentOptions::new();
    let queue = Queue::<u64>::create_with(name.name(), None, &options).expect("create");
    queue.put(&1).expect("put");
    let backing = Backing::of(&name);
    let ring = backing.read_u64(KIND_AREA);
    // The ring on the lock word (64-aligned), or past the segment.
    for damaged in [128, 2 << 30, !63] {
        backing.write_u64(KIND_AREA, damaged);
        backing.refuses(&format!("ring at {damaged}"), "ring", || {
            other(queue.try_put(&2))
        });
    }
    backing.write_u64(KIND_AREA, ring);
    // An empty window at the last sequence number: the next one does not exist.
    // `end` opens the senders' line, `head` the receivers' (`collections/queue/layout.rs`).
    let (head_at, end_at) = (KIND_AREA + 128, KIND_AREA + 64);
    let (head, end) = (backing.read_u64(head_at), backing.read_u64(end_at));
    backing.write_u64(head_at, u64::MAX);
    backing.write_u64(end_at, u64::MAX);
    backing.refuses("end sequence number u64::MAX", "entries", || {
        other(queue.try_put(&2))
    });
    backing.write_u64(head_at, head);
    backing.write_u64(end_at, end);
    queue.try_put(&2).expect("put once repaired");
    assert_eq!(queue.to_vec().expect("read"), [1, 2]);
}

#[test]
fn a_value_whose_segment_has_no_room_for_it_is_refused_on_open() {
    let _dog = Watchdog::start();
    let name = Removal::fresh("damage-value");
    drop(Value::create(name.name(), 7u64).expect("create"));
    let backing = Backing::of(&name);
    // Committed and maximum size of one page: the control page, no room for the value.
    backing.write_u64(24, 4096);
    backing.write_u64(32, 4096);
    backing.file.set_len(4096);
    let control = backing.control_page();
    let err = Value::<u64>::open(name.name()).expect_err("a value without room opened");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(backing.control_page() == control, "opening changed it");
    assert_eq!(backing.size(), 4096);
}
