/* `kite shm-server SOCKET ...`: an ivshmem server (see shm_server.c). */
#ifndef KITE_TOOLS_SHM_SERVER_H
#define KITE_TOOLS_SHM_SERVER_H

/* argv[0] is "shm-server"; returns kite's exit status. */
int shm_server_main(int argc, char **argv);

#endif
