//! The plan cache behind `einc::einsum` (its own binary: no other test touches the cache).

/// Repeated `einc::einsum` calls hit the plan cache; a different shape is a new entry.
#[test]
fn einsum_plan_cache_is_reused() {
    let a = ndarray::Array2::<f64>::ones((3, 4)).into_dyn();
    let b = ndarray::Array2::<f64>::ones((4, 5)).into_dyn();
    let before = einc::cache::len();
    for _ in 0..10 {
        let c = einc::einsum("ij,jk->ik", &[a.view(), b.view()]).expect("einsum");
        assert_eq!(c[[0, 0]], 4.0);
    }
    let after = einc::cache::len();
    assert!(
        after <= before + 1,
        "10 identical calls added {} entries",
        after - before
    );
}
