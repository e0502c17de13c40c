// FFmpeg decoding of the frames nearest a set of times (see video.h). A build configured with
// -DVIDEOBERT_FFMPEG=OFF compiles only the end of this file: every entry point fails, naming the file.
#include "train/data/video.h"

#include "tensor/error.h"

#if defined(VB_HAVE_FFMPEG)

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <numeric>

namespace vb::data {

namespace {

std::string av_reason(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

// One open video stream: demuxer, decoder, the frame being decoded and the converter, freed together.
struct Decoder {
  std::string path;
  AVFormatContext* fmt = nullptr;
  AVCodecContext* dec = nullptr;
  AVPacket* packet = nullptr;
  AVFrame* frame = nullptr;
  SwsContext* sws = nullptr;
  int stream = -1;
  double time_base = 0, start_time = 0;

  explicit Decoder(const std::string& p) : path(p) {
    static std::once_flag quiet;
    std::call_once(quiet, [] { av_log_set_level(AV_LOG_FATAL); });  // failures come back as Errors instead
    int err = avformat_open_input(&fmt, path.c_str(), nullptr, nullptr);
    VB_CHECK(err >= 0, "video {}: cannot be opened: {}", path, av_reason(err));
    err = avformat_find_stream_info(fmt, nullptr);
    VB_CHECK(err >= 0, "video {}: cannot read stream information: {}", path, av_reason(err));
    const AVCodec* codec = nullptr;
    stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    VB_CHECK(stream >= 0, "video {}: no decodable video stream: {}", path, av_reason(stream));
    AVStream* st = fmt->streams[stream];
    dec = avcodec_alloc_context3(codec);
    VB_CHECK(dec, "video {}: out of memory allocating the decoder", path);
    err = avcodec_parameters_to_context(dec, st->codecpar);
    VB_CHECK(err >= 0, "video {}: bad codec parameters: {}", path, av_reason(err));
    dec->thread_count = 1;  // the loader runs one decoder per worker thread
    err = avcodec_open2(dec, codec, nullptr);
    VB_CHECK(err >= 0, "video {}: cannot open the {} decoder: {}", path, codec->name, av_reason(err));
    packet = av_packet_alloc();
    frame = av_frame_alloc();
    VB_CHECK(packet && frame, "video {}: out of memory", path);
    time_base = av_q2d(st->time_base);
    start_time = st->start_time != AV_NOPTS_VALUE ? double(st->start_time) * time_base : 0.0;
  }
  ~Decoder() {
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  VideoInfo info() const {
    const AVStream* st = fmt->streams[stream];
    VideoInfo v;
    v.width = dec->width;
    v.height = dec->height;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
      v.duration = double(st->duration) * time_base;
    else if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0)
      v.duration = double(fmt->duration) / AV_TIME_BASE;
    const AVRational rate = av_guess_frame_rate(fmt, const_cast<AVStream*>(st), nullptr);
    v.fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0.0;
    v.codec = avcodec_get_name(dec->codec_id);
    return v;
  }

  void seek(double t) {
    const auto ts = int64_t((t + start_time) / time_base);
    if (av_seek_frame(fmt, stream, ts, AVSEEK_FLAG_BACKWARD) >= 0) avcodec_flush_buffers(dec);
    // A stream that cannot seek is decoded straight on: slower, same frames.
  }

  // Sends packets until the decoder returns a frame (true) or the stream is exhausted (false).
  bool next_frame(bool& flushing) {
    for (;;) {
      int err = avcodec_receive_frame(dec, frame);
      if (err >= 0) return true;
      if (err == AVERROR_EOF) return false;
      VB_CHECK(err == AVERROR(EAGAIN), "video {}: decoding failed: {}", path, av_reason(err));
      if (flushing) return false;
      err = av_read_frame(fmt, packet);
      if (err == AVERROR_EOF) {
        flushing = true;
        err = avcodec_send_packet(dec, nullptr);
        VB_CHECK(err >= 0 || err == AVERROR_EOF, "video {}: decoding failed: {}", path, av_reason(err));
        continue;
      }
      VB_CHECK(err >= 0, "video {}: cannot read: {}", path, av_reason(err));
      if (packet->stream_index == stream) {
        err = avcodec_send_packet(dec, packet);
        av_packet_unref(packet);
        VB_CHECK(err >= 0, "video {}: corrupt data: {}", path, av_reason(err));  // no EAGAIN: drained first
      } else {
        av_packet_unref(packet);
      }
    }
  }

  Image to_rgb(const AVFrame* f) {
    VB_CHECK(f->width > 0 && f->height > 0, "video {}: decoded an empty frame", path);
    sws = sws_getCachedContext(sws, f->width, f->height, AVPixelFormat(f->format), f->width, f->height,
                               AV_PIX_FMT_RGB24, SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr,
                               nullptr, nullptr);
    VB_CHECK(sws, "video {}: no conversion from pixel format {} to RGB24", path,
             av_get_pix_fmt_name(AVPixelFormat(f->format)) ? av_get_pix_fmt_name(AVPixelFormat(f->format)) : "?");
    Image img(f->width, f->height);
    uint8_t* dst[4] = {img.rgb.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {3 * f->width, 0, 0, 0};
    const int rows = sws_scale(sws, f->data, f->linesize, 0, f->height, dst, dst_stride);
    VB_CHECK(rows == f->height, "video {}: RGB conversion produced {} of {} rows", path, rows, f->height);
    return img;
  }
};

}  // namespace

VideoInfo probe_video(const std::string& path) { return Decoder(path).info(); }

namespace {

std::vector<Image> decode_nearest(Decoder& d, const std::string& path, const std::vector<double>& times) {
  std::vector<Image> out(times.size());
  if (times.empty()) return out;
  for (double t : times) VB_CHECK(std::isfinite(t) && t >= 0, "video {}: cannot seek to time {} s", path, t);
  std::vector<size_t> order(times.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return times[a] < times[b]; });
  const double frame_step = [&] {
    const double fps = d.info().fps;
    return fps > 0 ? 1.0 / fps : 0.04;
  }();

  std::unique_ptr<AVFrame, void (*)(AVFrame*)> prev(av_frame_alloc(), [](AVFrame* f) { av_frame_free(&f); });
  VB_CHECK(prev, "video {}: out of memory", path);
  bool have_prev = false, flushing = false;
  double prev_t = 0, last_t = -1;
  size_t k = 0;                  // next target in time order
  size_t seeked_for = SIZE_MAX;  // the target a seek was last made for: one seek per target at most
  if (times[order[0]] > kSeekGapSeconds) {
    d.seek(times[order[0]]);
    seeked_for = 0;
  }
  while (k < order.size() && d.next_frame(flushing)) {
    const int64_t pts = d.frame->best_effort_timestamp;
    const double t = pts != AV_NOPTS_VALUE ? double(pts) * d.time_base - d.start_time : last_t + frame_step;
    last_t = t;
    while (k < order.size() && t >= times[order[k]]) {
      const double target = times[order[k]];
      const bool take_prev = have_prev && target - prev_t <= t - target;
      out[order[k]] = d.to_rgb(take_prev ? prev.get() : d.frame);
      ++k;
    }
    av_frame_unref(prev.get());
    av_frame_move_ref(prev.get(), d.frame);
    prev_t = t;
    have_prev = true;
    if (k < order.size() && seeked_for != k && times[order[k]] - t > kSeekGapSeconds) {
      d.seek(times[order[k]]);
      seeked_for = k;
      have_prev = false;
      flushing = false;
    }
  }
  VB_CHECK(have_prev || k > 0, "video {}: no frame could be decoded", path);
  for (; k < order.size(); ++k) out[order[k]] = d.to_rgb(prev.get());  // past the last frame
  return out;
}

}  // namespace

std::vector<Image> decode_video_frames(const std::string& path, const std::vector<double>& times) {
  for (double t : times) VB_CHECK(std::isfinite(t) && t >= 0, "video {}: cannot seek to time {} s", path, t);
  Decoder d(path);
  return decode_nearest(d, path, times);
}

std::vector<Image> decode_video_clip(const std::string& path, const std::vector<double>& positions,
                                     std::optional<double> start, std::optional<double> end) {
  Decoder d(path);
  const double t0 = start.value_or(0.0);
  double t1 = 0;
  if (end) {
    t1 = *end;
  } else {
    t1 = d.info().duration;
    VB_CHECK(t1 > 0, "video {}: the container does not give a duration; give \"end\" in the manifest", path);
  }
  VB_CHECK(t0 < t1, "video {}: start {} s is not before end {} s (the video lasts {} s)", path, t0, t1,
           d.info().duration);
  std::vector<double> times(positions.size());
  for (size_t i = 0; i < positions.size(); ++i) times[i] = t0 + positions[i] * (t1 - t0);
  return decode_nearest(d, path, times);
}

}  // namespace vb::data

#else  // no FFmpeg in this build

namespace vb::data {

namespace {

[[noreturn]] void no_ffmpeg(const std::string& path) {
  fail("video {}: this build has no FFmpeg (configured with -DVIDEOBERT_FFMPEG=OFF), so it cannot decode video "
       "files; rebuild with -DVIDEOBERT_FFMPEG=ON, or give the clip as a folder of frames (\"frames\" in the "
       "manifest)",
       path);
}

}  // namespace

VideoInfo probe_video(const std::string& path) { no_ffmpeg(path); }

std::vector<Image> decode_video_frames(const std::string& path, const std::vector<double>& times) {
  no_ffmpeg(path);
}

std::vector<Image> decode_video_clip(const std::string& path, const std::vector<double>& positions,
                                     std::optional<double> start, std::optional<double> end) {
  no_ffmpeg(path);
}

}  // namespace vb::data

#endif
