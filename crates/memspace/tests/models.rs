//! Model-based property tests: random operation sequences applied to a shared collection and
//! to its std counterpart must agree at every step.

use memspace::SharedList;
use memspace::collections::SharedVec;
use memspace_testkit::Removal;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum ListOp {
    Push(String),
    Extend(Vec<i32>),
    Get(u64),
    Len,
    Reopen,
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        4 => ".{0,300}".prop_map(ListOp::Push),
        2 => proptest::collection::vec(any::<i32>(), 0..20).prop_map(ListOp::Extend),
        3 => (0u64..400).prop_map(ListOp::Get),
        1 => Just(ListOp::Len),
        1 => Just(ListOp::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Item {
    Text(String),
    Number(i32),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_shared_list_behaves_like_a_vec(ops in proptest::collection::vec(list_op(), 1..120)) {
        let removal = Removal::fresh("list");
        let name = removal.name();
        let mut list = SharedList::<Item>::create(name).expect("create");
        let mut model: Vec<Item> = Vec::new();
        for op in ops {
            match op {
                ListOp::Push(text) => {
                    list.push(&Item::Text(text.clone())).expect("push");
                    model.push(Item::Text(text));
                }
                ListOp::Extend(numbers) => {
                    let items: Vec<Item> = numbers.into_iter().map(Item::Number).collect();
                    list.extend(&items).expect("extend");
                    model.extend(items);
                }
                ListOp::Get(index) => {
                    prop_assert_eq!(list.get(index).expect("get"), model.get(index as usize).cloned());
                }
                ListOp::Len => prop_assert_eq!(list.len().expect("len"), model.len() as u64),
                ListOp::Reopen => list = SharedList::open(name).expect("reopen"),
            }
        }
        prop_assert_eq!(list.to_vec().expect("read"), model.clone());
        let iterated: Vec<Item> = list.iter().collect::<Result<_, _>>().expect("iterate");
        prop_assert_eq!(iterated, model);
        prop_assert!(memspace::inspect::verify(list.segment().expect("in shared memory")).is_consistent());
    }

    #[test]
    fn a_shared_vec_behaves_like_a_vec(
        batches in proptest::collection::vec(proptest::collection::vec(any::<u64>(), 0..3000), 1..20)
    ) {
        let vec = SharedVec::<u64>::new().expect("vec");
        let mut model = Vec::new();
        for batch in batches {
            if batch.len() == 1 {
                vec.push(batch[0]).expect("push");
            } else {
                vec.extend_from_slice(&batch).expect("extend");
            }
            model.extend_from_slice(&batch);
            prop_assert_eq!(vec.len(), model.len() as u64);
            prop_assert_eq!(vec.as_slice().expect("slice"), &model[..]);
        }
        prop_assert_eq!(vec.get(model.len() as u64).expect("get"), None);
        if let Some(last) = model.last() {
            prop_assert_eq!(vec.get(model.len() as u64 - 1).expect("get"), Some(*last));
        }
    }
}
