// The pretraining configuration: presets, files, overrides and their errors.
#include <filesystem>
#include <fstream>

#include "tests/support/check.h"
#include "train/config.h"

using namespace vb::train;

TEST_CASE("every preset validates and names its model") {
  for (const auto& name : preset_names()) {
    nlohmann::json c = load_config(name);
    CHECK_NOTHROW(validate_config(c, name));
  }
  CHECK(load_config("tiny")["model"] == "single_stream");
  CHECK(load_config("tiny-late")["model"] == "late_fusion");
  CHECK(load_config("tiny-dual")["model"] == "dual_encoder");
  CHECK(load_config("base")["vision"] == "resnet50");
  // Frame differences: on in the tiny presets, off in base (torchvision's 3-channel stem) and by default,
  // so that a run saved before the key existed loads as it was trained.
  for (const char* tiny : {"tiny", "tiny-late", "tiny-dual"}) CHECK(load_config(tiny)["frame_differences"] == true);
  CHECK(load_config("base")["frame_differences"] == false);
  CHECK(default_config()["frame_differences"] == false);
}

TEST_CASE("overrides parse by the key's type and reject unknown keys and bad values") {
  nlohmann::json c = load_config("tiny");
  apply_overrides(c, {"steps=12", "lr=0.5", "augment.flip=true", "schedule=linear", "objectives.mfm=0"});
  CHECK(c["steps"] == 12);
  CHECK(c["lr"] == 0.5);
  CHECK(c["augment"]["flip"] == true);
  CHECK(c["schedule"] == "linear");
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"stepz=3"}), doctest::Contains("unknown key 'stepz'"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"steps=ten"}), doctest::Contains("'steps' expects an integer"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"steps=0"}), doctest::Contains("'steps' = 0 is out of range"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"lr=-1"}), doctest::Contains("'lr'"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"augment.flip=yes"}), doctest::Contains("true or false"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"model=transformer"}), doctest::Contains("'model' must be one of"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"augment=1"}), doctest::Contains("is a group"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"batch_size"}), doctest::Contains("expected key=value"), vb::Error);
}

TEST_CASE("augment.mirror_words: word pairs a:b,c:d; anything else names the key and the pair") {
  nlohmann::json c = load_config("tiny");
  CHECK(vb::train::mirror_word_pairs(c["augment"]["mirror_words"], "k") ==
        std::vector<std::pair<std::string, std::string>>{{"left", "right"}});
  apply_overrides(c, {"augment.mirror_words=left:right,leftward:rightward"});
  CHECK(vb::train::mirror_word_pairs(c["augment"]["mirror_words"], "k").size() == 2);
  apply_overrides(c, {"augment.mirror_words="});  // no pairs: flips change no word
  CHECK(vb::train::mirror_word_pairs(c["augment"]["mirror_words"], "k").empty());
  for (const char* bad : {"augment.mirror_words=left", "augment.mirror_words=left:right,up", "augment.mirror_words=a:b:c",
                          "augment.mirror_words=:right"})
    CHECK_THROWS_WITH_AS(apply_overrides(c, {bad}), doctest::Contains("augment.mirror_words"), vb::Error);
}

TEST_CASE("a config file merges over a preset; unknown keys name the file") {
  const auto dir = std::filesystem::temp_directory_path() / "vb_config_test";
  std::filesystem::create_directories(dir);
  const std::string good = (dir / "good.json").string(), bad = (dir / "bad.json").string();
  std::ofstream(good) << R"({"preset": "tiny-dual", "batch_size": 8, "augment": {"flip": false}})";
  std::ofstream(bad) << R"({"batch_size": 8, "augment": {"flipp": false}})";
  nlohmann::json c = load_config(good);
  CHECK(c["model"] == "dual_encoder");
  CHECK(c["batch_size"] == 8);
  CHECK(c["augment"]["flip"] == false);
  CHECK(c["augment"]["random_resized_crop"] == true);
  CHECK_THROWS_WITH_AS(load_config(bad), doctest::Contains("unknown key 'augment.flipp'"), vb::Error);
  CHECK_THROWS_WITH_AS(load_config("nonexistent-preset"), doctest::Contains("neither a preset"), vb::Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("objective weights must fit the model") {
  nlohmann::json c = load_config("tiny-dual");
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"objectives.mlm=1"}), doctest::Contains("dual_encoder trains only"), vb::Error);
  c = load_config("tiny");
  CHECK_THROWS_WITH_AS(
      apply_overrides(c, {"objectives.matching=0", "objectives.mlm=0", "objectives.mfm=0", "objectives.contrastive=0"}),
      doctest::Contains("every objective weight is 0"), vb::Error);
  c = load_config("tiny-late");
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"objectives.contrastive=1"}), doctest::Contains("no masked-LM, masked-frame or contrastive"),
                       vb::Error);
  c = load_config("tiny");
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"rerank_k=-1"}), doctest::Contains("rerank_k"), vb::Error);
  CHECK_THROWS_WITH_AS(apply_overrides(c, {"hard_negatives=1"}), doctest::Contains("hard_negatives"), vb::Error);
}

TEST_CASE("a run's saved config: keys added since take the behaviour the run was trained with") {
  const auto dir = std::filesystem::temp_directory_path() / "vb_run_config_test";
  std::filesystem::create_directories(dir);
  // A tiny run saved before frame_differences existed: its model has the 3-channel stem.
  nlohmann::json old_run = load_config("tiny");
  old_run.erase("frame_differences");
  const std::string old_path = (dir / "old.json").string(), new_path = (dir / "new.json").string(),
                    bad_path = (dir / "bad.json").string();
  std::ofstream(old_path) << old_run.dump(2);
  std::ofstream(new_path) << load_config("tiny").dump(2);
  std::ofstream(bad_path) << R"({"batch_size": 8, "frame_diffs": true})";
  CHECK(read_run_config(old_path)["frame_differences"] == false);
  CHECK(read_run_config(new_path)["frame_differences"] == true);
  CHECK(read_run_config(old_path)["steps"] == load_config("tiny")["steps"]);
  CHECK_THROWS_WITH_AS(read_run_config(bad_path), doctest::Contains("unknown key 'frame_diffs'"), vb::Error);
  CHECK_THROWS_WITH_AS(read_run_config((dir / "missing.json").string()), doctest::Contains("missing.json"), vb::Error);
  std::filesystem::remove_all(dir);
}
