// The emulated NCCL: the part of NCCL's API that the framework calls (kernels/cuda/nccl_comm.inc), with
// NCCL's names, signatures, values and semantics, for device `emu`, whose "device" memory is host memory
// and whose streams are the emulated runtime's (vb::rt::emu; a cudaStream_t here is an rt::Stream's
// handle). The source that calls NCCL on a GPU calls this under the kernel emulator, so the nccl
// communicator is tested on machines without a GPU, across real processes (one per rank, started by
// mpirun or anything else), as NCCL runs.
//
// As in NCCL: ncclGetUniqueId starts a bootstrap root (a thread of the calling process) whose address is
// in the id; every rank's ncclCommInitRank registers with it and learns the others' addresses; the
// ranks connect in a ring over TCP, and the collectives are ring algorithms (all-reduce = reduce-scatter
// + all-gather), enqueued on a stream and run in stream order by the communicator's thread, so that a
// call returns before its data moves. Every rank ends with bitwise identical results.
//
// Where NCCL hangs, this reports (ncclCommGetAsyncError, then ncclGetLastError's message):
//   - a desync: before each collective, every rank sends its neighbour a header (sequence number, call,
//     count, datatype, op, root); ranks that disagree fail with ncclInvalidUsage and "desync at collective
//     #5: rank 0 called ncclAllReduce(count 100, ncclFloat32, ncclSum) but rank 1 called
//     ncclAllGather(count 50, ncclFloat32)", on every rank;
//   - a rank whose connection closes (it exited, was killed, aborted or destroyed its communicator
//     early): ncclRemoteError naming it and the collective in progress, on every rank.
// A rank that is alive but never calls (a stalled rank) is waited for, as by NCCL: the caller's own
// deadline and ncclCommAbort (which unblocks everything at once) handle that.
//
// Datatypes: every integer and floating type of NCCL except the two fp8 types (ncclInvalidArgument).
// float16 and bfloat16 are reduced in float32 and rounded to the type at every step of the ring; ncclAvg
// is the sum divided by nranks at the end (in float32 for 16-bit types; truncated towards zero for
// integers, as NCCL's SumPostDiv); max and min return NaN when either operand is NaN.
//
// Not emulated: ncclCommInitAll, split and shrink, send/recv, reduce, all-to-all, user reduction ops,
// memory registration, the fp8 types, and any kind of speed (see docs/EMULATOR.md, "The emulated NCCL").
//
// No translation unit includes both this header and NCCL's nccl.h: their macros share names.
#pragma once

#include <climits>
#include <cstddef>

#include <driver_types.h>  // cudaStream_t, as in NCCL's signatures

#if defined(NCCL_H_)
#error "kernels/emu/nccl.h and NCCL's nccl.h are included in one translation unit"
#endif

// The NCCL API level emulated (NCCL 2.28's API); ncclGetVersion returns NCCL_VERSION_CODE.
#define NCCL_MAJOR 2
#define NCCL_MINOR 28
#define NCCL_PATCH 0
#define NCCL_VERSION(X, Y, Z) (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : (X) * 10000 + (Y) * 100 + (Z))
#define NCCL_VERSION_CODE NCCL_VERSION(NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH)

#define NCCL_UNIQUE_ID_BYTES 128
#define NCCL_CONFIG_UNDEF_INT INT_MIN
#define NCCL_CONFIG_UNDEF_PTR NULL

namespace vb::nccl_emu {

struct ncclComm;  // kernels/emu/nccl.cpp
typedef struct ncclComm* ncclComm_t;

typedef struct {
  char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 8
} ncclResult_t;

typedef enum {
  ncclSum = 0,
  ncclProd = 1,
  ncclMax = 2,
  ncclMin = 3,
  ncclAvg = 4,
  ncclNumOps = 5
} ncclRedOp_t;

typedef enum {
  ncclInt8 = 0, ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2, ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6, ncclHalf = 6,
  ncclFloat32 = 7, ncclFloat = 7,
  ncclFloat64 = 8, ncclDouble = 8,
  ncclBfloat16 = 9,
  ncclFloat8e4m3 = 10,
  ncclFloat8e5m2 = 11,
  ncclNumTypes = 12
} ncclDataType_t;

// NCCL's configuration, its user fields in NCCL's order. Only `blocking` is acted on: 0 makes the
// communicator non-blocking (ncclCommInitRankConfig, the collectives, ncclGroupEnd and ncclCommFinalize
// return ncclInProgress, and ncclCommGetAsyncError says when they are done). The others are accepted and
// ignored. As in NCCL, a config must start as NCCL_CONFIG_INITIALIZER.
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cgaClusterSize;
  int minCTAs;
  int maxCTAs;
  const char* netName;
  int splitShare;
  int trafficClass;
  const char* commName;
  int collnetEnable;
  int CTAPolicy;
  int shrinkShare;
  int nvlsCTAs;
  int nChannelsPerNetPeer;
  int nvlinkCentricSched;
} ncclConfig_t;

#define NCCL_CONFIG_INITIALIZER                                                                              \
  {                                                                                                          \
    sizeof(ncclConfig_t), 0xcafebeef, NCCL_VERSION(NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH), NCCL_CONFIG_UNDEF_INT, \
        NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_PTR,          \
        NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_PTR, NCCL_CONFIG_UNDEF_INT,          \
        NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT, NCCL_CONFIG_UNDEF_INT,          \
        NCCL_CONFIG_UNDEF_INT                                                                                \
  }

ncclResult_t ncclGetVersion(int* version);
// Starts the bootstrap root in this process; the id holds its address (host, port) and a random magic.
// The root listens on every interface and puts 127.0.0.1 in the id, or the address in VB_NCCL_EMU_ADDR
// (for ranks on other hosts). It serves one communicator and ends.
ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId);

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank);
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t* config);
// Finalize waits for (blocking) or flushes (non-blocking) the collectives issued and says goodbye to the
// peers; Destroy frees the communicator (finalising it first if needed; at once if it has failed); Abort
// unblocks everything in flight, from any thread, and frees it.
ncclResult_t ncclCommFinalize(ncclComm_t comm);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError);
const char* ncclGetErrorString(ncclResult_t result);
// The message of the communicator's error (of the last failed call when comm is null or healthy). The
// pointer stays valid until this thread's next call.
const char* ncclGetLastError(ncclComm_t comm);
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count);
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank);

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
// In place when recvbuff == sendbuff + rank * recvcount.
ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
// In place when sendbuff == recvbuff + rank * sendcount.
ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream);

// Collectives called between them (on this thread) are issued, in order, at the outermost ncclGroupEnd.
ncclResult_t ncclGroupStart();
ncclResult_t ncclGroupEnd();

}  // namespace vb::nccl_emu
