/* hub/broker_node.h - `mamorid broker` and `mamorid broker-init`: a broker
 * node as a service of its own, apart from every hub (broker_node.c). */
#ifndef MAMORI_HUB_BROKER_NODE_H
#define MAMORI_HUB_BROKER_NODE_H

/* argv[0] is the command's name. Return the process's exit status. */
int broker_init_main(int argc, char **argv);
/* plugin: the plugin's default path (next to mamorid). */
int broker_node_main(int argc, char **argv, const char *plugin);

#endif
