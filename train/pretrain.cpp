#include "train/pretrain.h"

#include <filesystem>
#include <iostream>

#include "kernels/backend.h"
#include "kernels/cpu/gemm.h"
#include "models/weights.h"
#include "tensor/atomic_file.h"
#include "tensor/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/evaluate.h"
#include "train/report.h"

namespace fs = std::filesystem;

namespace vb::train {

namespace {

EvalOptions eval_options(const nlohmann::json& c, data::Split split, Device device) {
  EvalOptions o;
  o.split = split;
  o.frames = c["frames"];
  o.size = c["image_size"];
  o.max_length = c["max_text_len"];
  o.workers = c["workers"];
  o.seed = c["seed"];
  o.device = device;
  return o;
}

}  // namespace

Device resolve_device(const std::string& name) {
  if (name != "auto") {
    Device d = Device::parse(name);
    VB_CHECK(d.is_cpu() || has_runtime(d.type), "device {}: not available in this build or on this machine", name);
    backend(d);  // an Error when no kernels are registered for it
    return d;
  }
  if (has_runtime(DeviceType::CUDA)) {
    try {
      backend(Device(DeviceType::CUDA));
      return Device(DeviceType::CUDA);
    } catch (const Error&) {
    }
  }
  return Device();
}

namespace {

// The body of pretrain() once the job is joined; `group` is null for one process.
TrainResult run_pretraining(const PretrainOptions& opt, Device device, dist::ProcessGroup* group) {
  const nlohmann::json& c = opt.config;
  dist::Communicator* comm = group ? group->comm.get() : nullptr;
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  if (device.is_cpu() && rank == 0 && !opt.quiet) {
    if (c["precision"] == "float16")
      std::cout << "note: precision float16 is for GPUs; the CPU runs float32 (bfloat16 runs on the CPU)" << std::endl;
    else if (c["precision"] == "bfloat16" && cpu::gemm_bf16_path() == cpu::GemmBf16Path::kFloat32)
      std::cout << "note: precision bfloat16 on a CPU without AMX or AVX512-BF16 (or a build not targeting them) runs "
                   "its products in float32 with conversions on top: slower than precision=float32 here"
                << std::endl;
  }

  const std::string vocab = text_vocab_path(c, opt.data_dir);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(vocab);
  data::Manifest manifest = data::load_manifest(opt.data_dir);
  manual_seed(c["seed"]);  // model initialisation draws from the default generator (rank 0's reaches all)
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  if (!opt.resume) load_initial_weights(task->module(), c);  // text_init, vision_init
  task->module().to(device);
  task->module().train();
  Trainer trainer(*task, c, device, comm, group ? group->store.get() : nullptr);
  data::DataLoader loader(manifest, tokenizer, training_loader_options(c, rank, world, device, opt.strict));
  VB_CHECK(loader.batches_per_epoch() > 0, "pretrain: the train split of {} has {} clips, fewer than {} rank{} × "
           "batch_size {}", manifest.path, loader.clips().size(), world, world == 1 ? "" : "s", c["batch_size"].get<int64_t>());

  const fs::path run(opt.out_dir);
  if (rank == 0) {
    // The vocabulary beside the weights: what `videobert export` writes out with the text encoder.
    fs::create_directories(run);
    write_text_atomic((run / "vocab.txt").string(), read_text_file(vocab));
  }
  RunHooks hooks;
  hooks.evaluate = [&](data::Split split) { return evaluate(*task, manifest, tokenizer, eval_options(c, split, device)); };
  hooks.periodic = manifest.split(data::Split::Val).size() >= 2;
  hooks.eval_line = [](int64_t step, const nlohmann::json& m) {
    return fmt::format("val @ {}: t2v R@1 {:.3f} R@5 {:.3f}, v2t R@1 {:.3f}", step, m["t2v_r1"].get<double>(),
                       m["t2v_r5"].get<double>(), m["v2t_r1"].get<double>());
  };
  hooks.finish = [&](int64_t step, EventWriter& events) {
    // Retrieval needs two clips at least: the test split, else the validation split, else no final evaluation.
    const data::Split split = manifest.split(data::Split::Test).size() >= 2 ? data::Split::Test : data::Split::Val;
    nlohmann::json m;
    if (manifest.split(split).size() < 2) {
      if (!opt.quiet)
        std::cout << fmt::format("no final evaluation: the test and val splits of {} hold fewer than 2 clips each",
                                 manifest.path)
                  << std::endl;
    } else {
      m = evaluate(*task, manifest, tokenizer, eval_options(c, split, device));
      write_text_atomic((run / fmt::format("eval_{}.json", data::split_name(split))).string(), m.dump(2) + "\n");
      for (auto it = m.begin(); it != m.end(); ++it)
        if (it.value().is_number_float())
          events.add_scalar(std::string(data::split_name(split)) + "/" + it.key(), it.value().get<float>(), step);
    }
    write_report(run.string(), c, read_metrics((run / "metrics.jsonl").string()), m);
    return m;
  };
  RunOptions ro;
  ro.out_dir = opt.out_dir;
  ro.resume = opt.resume;
  ro.quiet = opt.quiet;
  ro.stop_after = opt.stop_after;
  return run_training(c, ro, *task, trainer, loader, comm, hooks);
}

}  // namespace

TrainResult pretrain(const PretrainOptions& opt) {
  validate_config(opt.config, "pretrain config");
  const Device device = resolve_device(opt.device);
  std::unique_ptr<dist::ProcessGroup> group = join_job(opt.config, device);
  try {
    return run_pretraining(opt, device, group.get());
  } catch (...) {
    // A failed rank must not wait for the others at MPI_Finalize or in NCCL's destroy.
    if (group) group->abort();
    throw;
  }
}

nlohmann::json evaluate_run(const std::string& run_dir, const std::string& data_dir, const std::string& split,
                            const std::string& device_name) {
  const fs::path run(run_dir);
  VB_CHECK(fs::exists(run / "config.json"), "eval: {} is not a run folder (no config.json)", run_dir);
  nlohmann::json c = read_run_config((run / "config.json").string());
  const Device device = resolve_device(device_name);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(text_vocab_path(c, data_dir));
  data::Manifest manifest = data::load_manifest(data_dir);
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  const fs::path weights = run_weights(run, "eval");
  task->module().load_state_dict(load_safetensors(weights.string()).tensors);
  task->module().to(device);
  nlohmann::json m = evaluate(*task, manifest, tokenizer, eval_options(c, data::parse_split(split), device));
  write_text_atomic((run / fmt::format("eval_{}.json", split)).string(), m.dump(2) + "\n");
  return m;
}

std::vector<std::string> export_run(const std::string& run_dir, const std::string& out_dir,
                                    const std::string& data_dir, const std::string& vision_out) {
  const fs::path run(run_dir);
  VB_CHECK(fs::exists(run / "config.json"), "export: {} is not a run folder (no config.json)", run_dir);
  // A fine-tuning run's config holds its task keys beside the model's; its weights are the model's under
  // "backbone." plus the heads.
  nlohmann::json raw = read_json_object((run / "config.json").string());
  const bool finetuned = raw.contains("task");
  nlohmann::json c = finetuned ? raw : read_run_config((run / "config.json").string());
  std::string vocab = (run / "vocab.txt").string();
  if (!fs::exists(vocab)) {
    VB_CHECK(!data_dir.empty() || !c.value("text_init", std::string()).empty(),
             "export: {} has no vocab.txt (runs made before pretrain copied it); give the dataset with --data", run_dir);
    vocab = text_vocab_path(c, data_dir);
  }
  VB_CHECK(fs::exists(vocab), "export: the vocabulary {} is missing", vocab);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::load(vocab);
  std::unique_ptr<Task> task = make_task(c, tokenizer);
  nn::NamedTensors state = load_safetensors(run_weights(run, "export").string()).tensors;
  if (finetuned) {
    nn::NamedTensors backbone;
    for (auto& [name, t] : state)
      if (name.starts_with("backbone.")) backbone.emplace_back(name.substr(9), t);
    state = std::move(backbone);
  }
  task->module().load_state_dict(state);
  task->module().eval();
  models::export_hf_bert(text_encoder(task->module()), out_dir, vocab);
  std::vector<std::string> written;
  for (const char* f : {"config.json", "model.safetensors", "vocab.txt"}) written.push_back((fs::path(out_dir) / f).string());
  if (!vision_out.empty()) {
    models::FrameEncoder& video = frame_encoder(task->module());
    VB_CHECK(!video.frame_differences, "export --vision {}: this run's stem reads 6 channels (frame_differences: each "
             "frame and its difference to the previous one); torchvision's ResNet reads 3", vision_out);
    models::export_torchvision_resnet(*video.backbone, vision_out);
    written.push_back(vision_out);
  }
  return written;
}

}  // namespace vb::train
