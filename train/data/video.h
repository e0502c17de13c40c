// Video files through FFmpeg (libavformat demuxes, libavcodec decodes, libswscale converts to RGB24).
// Any container and codec that Debian's FFmpeg reads works: mp4, webm, mkv, avi …
//
// Times are seconds from the start of the video stream (its first timestamp is 0). For each requested time
// the decoder returns the frame whose timestamp is nearest (ties to the earlier frame). It seeks to the
// keyframe before the first time, and again whenever the next time lies more than kSeekGapSeconds beyond
// the last decoded frame; otherwise it decodes straight on, which for a short clip is the whole of it.
// Times beyond the last frame get the last frame. Unreadable or corrupt input raises an Error naming the file
// and FFmpeg's reason (av_strerror). A build without FFmpeg (-DVIDEOBERT_FFMPEG=OFF) has these functions too,
// and each of them raises an Error naming the file and saying that the build cannot decode video.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "train/data/image.h"

namespace vb::data {

constexpr double kSeekGapSeconds = 2.0;

struct VideoInfo {
  int width = 0, height = 0;
  double duration = 0;  // seconds; 0 when the container does not say
  double fps = 0;       // the stream's frame rate as FFmpeg guesses it; 0 when unknown
  std::string codec;
};

VideoInfo probe_video(const std::string& path);

// The frames nearest `times` (seconds, any order), returned in the order asked.
std::vector<Image> decode_video_frames(const std::string& path, const std::vector<double>& times);

// The frames at `positions` (fractions in [0, 1), see sampling.h) of the span [start, end] seconds;
// start defaults to 0 and end to the video's duration. Opens the file once.
std::vector<Image> decode_video_clip(const std::string& path, const std::vector<double>& positions,
                                     std::optional<double> start = std::nullopt,
                                     std::optional<double> end = std::nullopt);

}  // namespace vb::data
