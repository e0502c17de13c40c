// Caption training and decoding on the emulated CUDA device give the CPU's results: the same tiny single
// stream (weights copied) on `cpu` and on `emu`, the captioning loss and its gradient under the seq2seq mask
// (the attention kernels with a full per-query mask), and greedy and beam-search captions. The CPU backend
// is the reference. The two backends round differently (GEMM order, exp), so values compare to relative 1e-4
// (on the dev VM the loss agreed to 6 digits) and the decoded tokens must be identical (a near-tie between
// two tokens, closer than the backends' rounding, could flip one; none occurs for these weights).
#include "tests/emu/emu_test.h"

#if defined(VB_HAVE_EMU)
#include <cmath>

#include "models/videobert.h"
#include "tensor/device.h"
#include "tests/support/check.h"
#include "train/captioning.h"

using namespace vb;
using namespace vb::train;
using namespace vb::models;

namespace {

const SpecialTokens kSpecial{0, 2, 3, 4, 1, 20};  // pad, cls, sep, mask, unk; 20 tokens
constexpr int64_t B = 2, Tt = 6, Tv = 2;

VideoBertConfig tiny_config() {
  VideoBertConfig c;
  c.text.vocab_size = kSpecial.vocab_size;
  c.text.hidden_size = 16;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 2;
  c.text.intermediate_size = 32;
  c.text.max_position_embeddings = 12;
  c.text.hidden_dropout_prob = 0;
  c.text.attention_probs_dropout_prob = 0;
  c.vision.width = 1;  // feature dim 8
  c.vision.blocks = {1, 1, 1, 1};
  c.sep_token_id = kSpecial.sep;
  return c;
}

Tensor parameter(const nn::Module& m, const std::string& name) {
  for (const auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  FAIL("no parameter ", name);
  return {};
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

DecodeOptions decode_options(int64_t width) {
  DecodeOptions o;
  o.special = kSpecial;
  o.text_len = Tt;
  o.beam_width = width;
  return o;
}

}  // namespace

TEST_CASE("emu: the captioning loss, its gradients and greedy / beam captions match the CPU's") {
  const Device emu(DeviceType::EMU);
  manual_seed(1);
  SingleStream cpu_model(tiny_config());
  SingleStream emu_model(tiny_config());
  emu_model.load_state_dict(cpu_model.state_dict());
  emu_model.to(emu);

  // [CLS] w w w [SEP] [PAD] and [CLS] w w [SEP] [PAD] [PAD]; frame features of dim 8.
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{2, 7, 9, 11, 3, 0, 2, 12, 5, 3, 0, 0}, {B, Tt});
  const Tensor mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0}, {B, Tt});
  Generator fg{5, 0};
  const Tensor features = randn({B, Tv, tiny_config().vision.feature_dim()}, &fg);

  CaptionLossOptions o;
  o.special = kSpecial;
  o.mask_probability = 0.5;
  Generator g_cpu{9, 0}, g_emu{9, 0};
  CaptionLoss on_cpu = caption_loss(cpu_model, ids, mask, features, g_cpu, o);
  CaptionLoss on_emu = caption_loss(emu_model, to(ids, emu), to(mask, emu), to(features, emu), g_emu, o);
  REQUIRE(on_emu.loss.device() == emu);
  CHECK(to(on_emu.masked.labels, Device()).to_vector() == on_cpu.masked.labels.to_vector());
  MESSAGE("caption loss: cpu ", on_cpu.loss.item(), ", |cpu − emu| ",
          std::abs(on_cpu.loss.item() - to(on_emu.loss, Device()).item()), " over ", on_cpu.masked.count,
          " masked tokens");
  test::check_close(to(on_emu.loss, Device()), on_cpu.loss, 1e-6, 1e-4, "caption loss");
  backward(on_cpu.loss);
  backward(on_emu.loss);
  for (const char* name : {"bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight",
                           "visual_projection.weight"}) {
    const Tensor gc = parameter(cpu_model, name).grad(), ge = parameter(emu_model, name).grad();
    test::check_close(to(ge, Device()), gc, 1e-6 + 1e-4 * max_abs(gc), 1e-4, std::string("gradient of ") + name);
  }

  for (int64_t width : {1, 3}) {
    CAPTURE(width);
    const std::vector<Caption> c = width == 1 ? greedy_decode(cpu_model, features, decode_options(width))
                                              : beam_search(cpu_model, features, decode_options(width));
    const std::vector<Caption> e = width == 1 ? greedy_decode(emu_model, to(features, emu), decode_options(width))
                                              : beam_search(emu_model, to(features, emu), decode_options(width));
    REQUIRE(c.size() == e.size());
    for (size_t i = 0; i < c.size(); ++i)
      MESSAGE("width ", width, " clip ", i, ": ", c[i].ids.size(), " tokens, log P cpu ", c[i].log_prob,
              ", |cpu − emu| ", std::abs(c[i].log_prob - e[i].log_prob));
    for (size_t i = 0; i < c.size(); ++i) {
      CAPTURE(i);
      CHECK(e[i].ids == c[i].ids);
      CHECK(e[i].finished == c[i].finished);
      CHECK(e[i].log_prob == doctest::Approx(c[i].log_prob).epsilon(1e-4));
    }
  }
}
#endif
