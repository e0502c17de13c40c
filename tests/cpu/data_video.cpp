// Video decoding: a short video written here with FFmpeg's own encoders (lossless FFV1 in Matroska, 8-bit RGB, and
// lossy MPEG-4 Part 2 in MP4) decodes back to the frames it was made from; seeking; corrupt input. A build
// configured with -DVIDEOBERT_FFMPEG=OFF checks instead that every entry point fails with an error naming the file.
#include <doctest/doctest.h>
#include <unistd.h>

#if defined(VB_HAVE_FFMPEG)
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}
#endif

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"
#include "train/data/video.h"

namespace fs = std::filesystem;
using namespace vb::data;

#if defined(VB_HAVE_FFMPEG)

namespace {

constexpr int kW = 32, kH = 24, kFps = 10;

// Frame i: a solid colour that changes with i, and a 6×6 white square that moves 2 pixels right per frame.
Image frame_of(int i) {
  Image img(kW, kH);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      uint8_t* p = img.pixel(x, y);
      const bool square = x >= 2 * i && x < 2 * i + 6 && y >= 9 && y < 15;
      p[0] = square ? 255 : uint8_t(20 * i);
      p[1] = square ? 255 : uint8_t(200 - 15 * i);
      p[2] = square ? 255 : uint8_t((90 + 50 * i) % 256);
    }
  return img;
}

void ok(int err, const char* what) {
  if (err < 0) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(err, buf, sizeof buf);
    FAIL(what, ": ", buf);
  }
}

// Encodes `frames` at kFps with `codec_id` in pixel format `pix_fmt` into `path` (container from its extension).
void write_video(const std::string& path, const std::vector<Image>& frames, AVCodecID codec_id, AVPixelFormat pix_fmt,
                 int gop) {
  const AVCodec* codec = avcodec_find_encoder(codec_id);
  REQUIRE_MESSAGE(codec, "FFmpeg has no ", avcodec_get_name(codec_id), " encoder");
  bool supported = false;
  for (const AVPixelFormat* f = codec->pix_fmts; f && *f != AV_PIX_FMT_NONE; ++f) supported |= *f == pix_fmt;
  REQUIRE_MESSAGE(supported, codec->name, " cannot encode ", av_get_pix_fmt_name(pix_fmt));
  AVFormatContext* oc = nullptr;
  ok(avformat_alloc_output_context2(&oc, nullptr, nullptr, path.c_str()), "output context");
  AVStream* st = avformat_new_stream(oc, nullptr);
  AVCodecContext* c = avcodec_alloc_context3(codec);
  c->width = kW;
  c->height = kH;
  c->time_base = AVRational{1, kFps};
  c->framerate = AVRational{kFps, 1};
  c->pix_fmt = pix_fmt;
  c->gop_size = gop;
  c->max_b_frames = 0;
  c->bit_rate = 2'000'000;
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  ok(avcodec_open2(c, codec, nullptr), "open encoder");
  ok(avcodec_parameters_from_context(st->codecpar, c), "parameters");
  st->time_base = c->time_base;
  ok(avio_open(&oc->pb, path.c_str(), AVIO_FLAG_WRITE), "avio_open");
  ok(avformat_write_header(oc, nullptr), "header");
  SwsContext* sws = sws_getContext(kW, kH, AV_PIX_FMT_RGB24, kW, kH, pix_fmt, SWS_BILINEAR | SWS_ACCURATE_RND, nullptr,
                                   nullptr, nullptr);
  AVFrame* f = av_frame_alloc();
  f->format = pix_fmt;
  f->width = kW;
  f->height = kH;
  ok(av_frame_get_buffer(f, 0), "frame buffer");
  AVPacket* pkt = av_packet_alloc();
  auto drain = [&] {
    for (;;) {
      const int err = avcodec_receive_packet(c, pkt);
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
      ok(err, "receive packet");
      pkt->duration = 1;  // one frame: MP4's edit list would otherwise end before the last frame
      av_packet_rescale_ts(pkt, c->time_base, st->time_base);
      pkt->stream_index = st->index;
      ok(av_interleaved_write_frame(oc, pkt), "write packet");
    }
  };
  for (size_t i = 0; i < frames.size(); ++i) {
    ok(av_frame_make_writable(f), "writable");
    const uint8_t* src[1] = {frames[i].rgb.data()};
    const int src_stride[1] = {3 * kW};
    sws_scale(sws, src, src_stride, 0, kH, f->data, f->linesize);
    f->pts = int64_t(i);
    ok(avcodec_send_frame(c, f), "send frame");
    drain();
  }
  ok(avcodec_send_frame(c, nullptr), "flush");
  drain();
  ok(av_write_trailer(oc), "trailer");
  av_packet_free(&pkt);
  av_frame_free(&f);
  sws_freeContext(sws);
  avcodec_free_context(&c);
  avio_closep(&oc->pb);
  avformat_free_context(oc);
}

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("vb_video_" + std::to_string(getpid()) + "_" + name);
}

double mean_abs_diff(const Image& a, const Image& b) {
  REQUIRE(a.rgb.size() == b.rgb.size());
  double s = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) s += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return s / double(a.rgb.size());
}

}  // namespace

TEST_CASE("video: a lossless FFV1/Matroska video decodes to exactly the frames encoded") {
  std::vector<Image> frames;
  for (int i = 0; i < 12; ++i) frames.push_back(frame_of(i));
  const fs::path path = temp_path("lossless.mkv");
  write_video(path.string(), frames, AV_CODEC_ID_FFV1, AV_PIX_FMT_0RGB32, 4);

  const VideoInfo info = probe_video(path.string());
  CHECK(info.width == kW);
  CHECK(info.height == kH);
  CHECK(info.fps == doctest::Approx(kFps));
  CHECK(info.duration == doctest::Approx(1.2).epsilon(0.1));
  CHECK(info.codec == "ffv1");

  // Every frame at its own time, asked out of order.
  std::vector<double> times;
  for (int i = 11; i >= 0; --i) times.push_back(i / double(kFps));
  std::vector<Image> got = decode_video_frames(path.string(), times);
  REQUIRE(got.size() == 12);
  for (int i = 0; i < 12; ++i) {
    CAPTURE(i);
    CHECK(got[size_t(11 - i)].width == kW);
    CHECK(got[size_t(11 - i)].rgb == frames[size_t(i)].rgb);
  }
  // Nearest frame: 0.34 s → frame 3, 0.36 s → frame 4, repeated times, past the end → the last frame.
  got = decode_video_frames(path.string(), {0.34, 0.36, 0.36, 5.0});
  CHECK(got[0].rgb == frames[3].rgb);
  CHECK(got[1].rgb == frames[4].rgb);
  CHECK(got[2].rgb == frames[4].rgb);
  CHECK(got[3].rgb == frames[11].rgb);
  // A clip [0.4, 1.2): uniform positions of 4 segments → times 0.5, 0.7, 0.9, 1.1 → frames 5, 7, 9, 11
  // (ties go to the earlier frame: 0.5 is frame 5 exactly).
  got = decode_video_clip(path.string(), {0.125, 0.375, 0.625, 0.875}, 0.4, 1.2);
  CHECK(got[0].rgb == frames[5].rgb);
  CHECK(got[1].rgb == frames[7].rgb);
  CHECK(got[2].rgb == frames[9].rgb);
  CHECK(got[3].rgb == frames[11].rgb);
  // The whole video when no end is given.
  got = decode_video_clip(path.string(), {0.0, 0.5});
  CHECK(got[0].rgb == frames[0].rgb);
  CHECK(got[1].rgb == frames[6].rgb);
  CHECK_THROWS_WITH_AS(decode_video_clip(path.string(), {0.5}, 3.0), doctest::Contains("start 3"), vb::Error);
  fs::remove(path);
}

TEST_CASE("video: seeking in a longer video finds the same frames as decoding straight through") {
  std::vector<Image> frames;
  for (int i = 0; i < 60; ++i) frames.push_back(frame_of(i % 13));
  const fs::path path = temp_path("long.mkv");
  write_video(path.string(), frames, AV_CODEC_ID_FFV1, AV_PIX_FMT_0RGB32, 5);
  // 0.1 s, then jumps of more than kSeekGapSeconds: the decoder seeks (to keyframes 30 and 55).
  const std::vector<Image> got = decode_video_frames(path.string(), {0.1, 3.3, 5.8, 5.9});
  CHECK(got[0].rgb == frames[1].rgb);
  CHECK(got[1].rgb == frames[33].rgb);
  CHECK(got[2].rgb == frames[58].rgb);
  CHECK(got[3].rgb == frames[59].rgb);
  fs::remove(path);
}

TEST_CASE("video: a lossy MPEG-4/MP4 video decodes close to the frames encoded") {
  std::vector<Image> frames;
  for (int i = 0; i < 12; ++i) frames.push_back(frame_of(i));
  const fs::path path = temp_path("lossy.mp4");
  write_video(path.string(), frames, AV_CODEC_ID_MPEG4, AV_PIX_FMT_YUV420P, 12);
  std::vector<double> times;
  for (int i = 0; i < 12; ++i) times.push_back(i / double(kFps));
  const std::vector<Image> got = decode_video_frames(path.string(), times);
  for (int i = 0; i < 12; ++i) {
    CAPTURE(i);
    // 4:2:0 chroma blurs the square's edges; the frame as a whole stays within a few levels.
    CHECK(mean_abs_diff(got[size_t(i)], frames[size_t(i)]) < 6.0);
    // and it is the right frame: each other frame is much further away
    for (int j = 0; j < 12; ++j)
      if (j != i) CHECK(mean_abs_diff(got[size_t(i)], frames[size_t(j)]) > mean_abs_diff(got[size_t(i)], frames[size_t(i)]));
  }
  fs::remove(path);
}

TEST_CASE("video: unreadable and corrupt files raise errors naming the file and FFmpeg's reason") {
  const fs::path missing = temp_path("missing.mp4");
  CHECK_THROWS_WITH_AS(probe_video(missing.string()), doctest::Contains(missing.string().c_str()), vb::Error);
  CHECK_THROWS_WITH_AS(decode_video_frames(missing.string(), {0.0}), doctest::Contains("No such file"), vb::Error);
  const fs::path junk = temp_path("junk.mp4");
  {
    std::ofstream out(junk, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(char((i * 7919) % 251));
  }
  CHECK_THROWS_WITH_AS(decode_video_frames(junk.string(), {0.0}), doctest::Contains(junk.string().c_str()), vb::Error);
  fs::remove(junk);
  CHECK_THROWS_WITH_AS(decode_video_frames(missing.string(), {-1.0}), doctest::Contains("time -1"), vb::Error);
}

#else  // no FFmpeg in this build

TEST_CASE("video: without FFmpeg, every entry point fails naming the file and the missing FFmpeg") {
  const std::string path = (fs::temp_directory_path() / "vb_video_any.mp4").string();
  const auto says_why = [&](const vb::Error& e) {
    const std::string what = e.what();
    CHECK_MESSAGE(what.find(path) != std::string::npos, what);
    CHECK_MESSAGE(what.find("no FFmpeg") != std::string::npos, what);
    CHECK_MESSAGE(what.find("VIDEOBERT_FFMPEG") != std::string::npos, what);
  };
  const auto check_fails = [&](auto&& call) {
    try {
      call();
      FAIL("expected a vb::Error");
    } catch (const vb::Error& e) {
      says_why(e);
    }
  };
  check_fails([&] { probe_video(path); });
  check_fails([&] { decode_video_frames(path, {0.0, 0.5}); });
  check_fails([&] { decode_video_clip(path, {0.25, 0.75}, 0.0, 2.0); });
}

#endif
