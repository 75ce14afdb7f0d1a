//! Confusion matrix and mIoU against hand-computed cases.
use coatt::eval::Confusion;

#[test]
fn hand_computed_iou_with_ignore_pixels() {
    // classes 0,1,2; GT row, prediction row; 255 in GT is skipped whatever is predicted
    let gt = [0, 0, 1, 1, 1, 2, 255, 255];
    let pr = [0, 1, 1, 1, 0, 2, 2, 0];
    let mut c = Confusion::new(3);
    c.add(&gt, &pr).unwrap();
    let s = c.scores();
    // class 0: tp 1, fp 1 (gt1→0), fn 1 (gt0→1) → 1/3
    assert_eq!(s[0].iou, Some(1.0 / 3.0));
    // class 1: tp 2, fp 1, fn 1 → 2/4
    assert_eq!(s[1].iou, Some(0.5));
    assert_eq!(s[1].fp_ratio, Some(0.5));
    assert_eq!(s[1].fn_ratio, Some(0.5));
    // class 2: tp 1, nothing else (the ignored pixel predicted 2 does not count)
    assert_eq!(s[2].iou, Some(1.0));
    assert!((c.miou() - (1.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
    assert_eq!(c.counts.iter().sum::<u64>(), 6);
}

#[test]
fn absent_classes_are_left_out_of_the_mean_but_false_positives_count() {
    let mut c = Confusion::new(4);
    c.add(&[0, 0, 1, 1], &[0, 0, 1, 1]).unwrap();
    assert_eq!(c.scores()[2].iou, None);
    assert_eq!(c.miou(), 1.0);
    // predicting a class that is nowhere in GT gives it IoU 0 and lowers the mean
    c.add(&[0, 0], &[3, 0]).unwrap();
    assert_eq!(c.scores()[3].iou, Some(0.0));
    assert_eq!(c.scores()[3].fp_ratio, None);
    let c0 = 3.0 / 4.0; // class 0: tp 3, fn 1
    assert!((c.miou() - (c0 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
}

#[test]
fn merging_and_bad_input() {
    let (mut a, mut b) = (Confusion::new(2), Confusion::new(2));
    a.add(&[0, 1], &[0, 1]).unwrap();
    b.add(&[1, 1], &[0, 1]).unwrap();
    let mut all = Confusion::new(2);
    all.add(&[0, 1, 1, 1], &[0, 1, 0, 1]).unwrap();
    a.merge(&b);
    assert_eq!(a, all);
    assert!(a.add(&[0, 1], &[0]).is_err(), "size mismatch");
    assert!(a.add(&[0, 5], &[0, 1]).is_err(), "GT class out of range");
    assert!(
        a.add(&[0, 1], &[0, 255]).is_err(),
        "a prediction must name a class"
    );
    assert!(a
        .markdown(&["background".into(), "x".into()])
        .contains("**mIoU**"));
}
