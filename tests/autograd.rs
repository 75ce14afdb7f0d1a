//! Tape behaviour: accumulation, no_grad, draining, untracked inputs, multi-output ops.
use coatt::autograd::{clear_tape, tape_len};
use coatt::testing::{rand_nonzero, rng};
use coatt::{backward, coattention, no_grad, DType, Device, Tensor};

#[test]
fn a_tensor_used_twice_accumulates_its_gradient() {
    let x = Tensor::from_f64(&[3.0], [1], DType::F64, Device::Cpu)
        .unwrap()
        .into_param();
    // y = x·x + 2x → dy/dx = 2x + 2 = 8
    let y = x.mul(&x).unwrap().add(&x.mul_scalar(2.0)).unwrap();
    let g = backward(&y).unwrap();
    assert_eq!(g.get(&x).unwrap().to_scalar().unwrap(), 8.0);
}

#[test]
fn no_grad_records_nothing_and_backward_drains_the_tape() {
    clear_tape();
    let x = Tensor::ones([4], DType::F32, Device::Cpu).into_param();
    let y = no_grad(|| x.mul_scalar(3.0).sum_all().unwrap());
    assert!(!y.is_tracked());
    assert_eq!(tape_len(), 0);
    assert!(backward(&y).is_err(), "nothing to differentiate");
    let z = x.mul_scalar(3.0).sum_all().unwrap();
    assert!(tape_len() > 0);
    let g = backward(&z).unwrap();
    assert_eq!(tape_len(), 0);
    assert_eq!(g.get(&x).unwrap().to_vec_f64(), vec![3.0; 4]);
    assert_eq!(g.len(), 1, "only the leaf keeps a gradient");
}

#[test]
fn untracked_inputs_get_no_gradient() {
    let w = Tensor::ones([2, 2], DType::F64, Device::Cpu).into_param();
    let x = Tensor::ones([2, 2], DType::F64, Device::Cpu);
    let g = backward(&w.matmul(&x).unwrap().sum_all().unwrap()).unwrap();
    assert!(g.get(&x).is_none());
    assert_eq!(g.get(&w).unwrap().to_vec_f64(), vec![2.0; 4]);
}

#[test]
fn multi_output_op_with_one_output_unused() {
    let mut r = rng(4);
    let (fm, fnn, w) = (
        rand_nonzero(&[1, 4, 6], &mut r).into_param(),
        rand_nonzero(&[1, 4, 5], &mut r).into_param(),
        rand_nonzero(&[4, 4], &mut r).into_param(),
    );
    let (a, _unused) = coattention(&fm, &fnn, &w).unwrap();
    let g = backward(&a.sum_all().unwrap()).unwrap();
    for t in [&fm, &fnn, &w] {
        let v = g.get(t).unwrap().to_vec_f64();
        assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
    }
}

#[test]
fn reshaped_views_share_storage_and_track() {
    let x = Tensor::from_f64(&[1., 2., 3., 4.], [2, 2], DType::F64, Device::Cpu)
        .unwrap()
        .into_param();
    let y = x.reshape(&[4]).unwrap();
    assert!(y.is_tracked());
    let g = backward(&y.mul(&y).unwrap().sum_all().unwrap()).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec_f64(), vec![2., 4., 6., 8.]);
    assert_eq!(g.get(&x).unwrap().dims(), &[2, 2]);
}
