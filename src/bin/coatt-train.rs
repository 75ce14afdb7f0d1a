//! `coatt-train`: the one binary. Thin: parse arguments, call the library.
use clap::{Parser, Subcommand};
use coatt::cli;

#[derive(Parser)]
#[command(
    name = "coatt-train",
    version,
    about = "Weakly supervised semantic segmentation with co-attention (MCIS, ECCV 2020) on the coatt engine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a synthetic VOC-layout dataset (objects = shared body + class-specific head).
    Synth(cli::SynthArgs),
    /// Report what a dataset folder holds: missing, corrupt or mismatched files, class counts.
    CheckData(cli::CheckDataArgs),
    /// Train the co-attention classifier (official recipe by default).
    TrainCls(cli::TrainClsArgs),
    /// Localization maps of a split from a trained classifier (co-attention or single-image).
    Cams(cli::CamsArgs),
    /// Pseudo labels from localization maps (background threshold or saliency rules).
    Pseudo(cli::PseudoArgs),
    /// mIoU of the maps' threshold labels for t = 0.00..0.60: table, best t, plot.
    EvalCam(cli::EvalCamArgs),
    /// Train AffinityNet on the confident parts of localization maps (pseudo-label refinement).
    TrainAffinity(cli::TrainAffinityArgs),
    /// Refine localization maps by a random walk over a trained AffinityNet's affinities.
    Refine(cli::RefineArgs),
    /// Train DeepLab-LargeFOV (ResNet-101 or VGG16) on pseudo labels or the GT masks.
    TrainSeg(cli::TrainSegArgs),
    /// Segment images: multi-scale + flip averaging, dense CRF, palette PNGs.
    Infer(cli::InferArgs),
    /// The whole method in one command: synth → train-cls → cams → pseudo → train-seg → infer → eval.
    Pipeline(cli::PipelineArgs),
    /// Score predicted label PNGs against a split's masks: confusion matrix, IoU, mIoU.
    Eval(cli::EvalArgs),
    /// OUT/report.html over a pipeline folder: tables, charts, galleries of train and val images.
    Report(cli::ReportArgs),
    /// One image of a pipeline folder as a PNG strip: input, truth, maps, labels, predictions.
    Show(cli::ShowArgs),
    /// Time the engine's core CPU kernels (conv2d vs a plain GEMM, co-attention) and print GFLOP/s.
    Bench(coatt::cli::bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = coatt::run_on_workers(|| match cli.cmd {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            println!();
            Ok(())
        }
        Some(Cmd::Synth(a)) => cli::synth(&a),
        Some(Cmd::CheckData(a)) => match cli::check_data(&a) {
            Ok(false) => std::process::exit(1),
            other => other.map(|_| ()),
        },
        Some(Cmd::TrainCls(a)) => cli::train_cls_cmd(&a),
        Some(Cmd::Cams(a)) => cli::cams_cmd(&a),
        Some(Cmd::Pseudo(a)) => cli::pseudo_cmd(&a),
        Some(Cmd::EvalCam(a)) => cli::eval_cam_cmd(&a),
        Some(Cmd::Eval(a)) => cli::eval_cmd(&a),
        Some(Cmd::Report(a)) => cli::report_cmd(&a),
        Some(Cmd::Show(a)) => cli::show_cmd(&a),
        Some(Cmd::TrainAffinity(a)) => cli::train_affinity_cmd(&a),
        Some(Cmd::Refine(a)) => cli::refine_cmd(&a),
        Some(Cmd::TrainSeg(a)) => cli::train_seg_cmd(&a),
        Some(Cmd::Infer(a)) => cli::infer_cmd(&a),
        Some(Cmd::Pipeline(a)) => cli::pipeline_cmd(&a),
        Some(Cmd::Bench(a)) => coatt::cli::bench::run(&a),
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
