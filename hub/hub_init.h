/* hub/hub_init.h - `mamorid hub-init`: one more hub's data directory
 * (hub_init.c). */
#ifndef MAMORI_HUB_HUB_INIT_H
#define MAMORI_HUB_HUB_INIT_H

/* argv[0] is the command's name. Returns the process's exit status. */
int hub_init_main(int argc, char **argv);

#endif
