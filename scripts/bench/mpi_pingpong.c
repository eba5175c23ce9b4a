/* mpi_pingpong.c -- the C side of scripts/bench/mpi.sh: ping-pong of a
 * byte buffer between ranks 0 and 1 with MPI_Send/MPI_Recv.
 *
 *   mpiexec -n 2 mpi_pingpong BYTES ROUNDS
 *
 * Rank 0 prints "c BYTES seconds_per_round_trip". */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  long bytes = argc > 1 ? atol(argv[1]) : 8;
  int rounds = argc > 2 ? atoi(argv[2]) : 1000;
  char *buf = malloc(bytes ? bytes : 1);
  memset(buf, 1, bytes);
  int peer = 1 - rank;
  for (int warm = 0; warm < 2; warm++) {
    int n = warm ? rounds : (rounds < 10 ? 1 : rounds / 10);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < n; i++) {
      if (rank == 0) {
        MPI_Send(buf, (int)bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
        MPI_Recv(buf, (int)bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 1) {
        MPI_Recv(buf, (int)bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buf, (int)bytes, MPI_BYTE, peer, 1, MPI_COMM_WORLD);
      }
    }
    double t = (MPI_Wtime() - t0) / n;
    if (warm && rank == 0) printf("c %ld %.9f\n", bytes, t);
  }
  free(buf);
  MPI_Finalize();
  return 0;
}
