/* hub/io/nodes.c - see nodes.h. A chained hash table of device ids. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "hub/io/nodes.h"

#define LOC_BUCKETS 65536 /* a power of two */

struct loc {
    struct loc *next;
    int node;
    char id[PROTO_DEVICE_ID_LEN + 1];
};

struct hub_locations {
    pthread_mutex_t mu;
    struct loc *bucket[LOC_BUCKETS];
    size_t per_node[HUB_NODES_MAX];
};

/* FNV-1a: device ids are ours (registered, bound by the plugin), not
 * chosen by an attacker to collide. */
static size_t slot(const char *id)
{
    uint32_t x = 2166136261u;
    for (; *id; id++)
        x = (x ^ (uint8_t)*id) * 16777619u;
    return x & (LOC_BUCKETS - 1);
}

enum mamori_err nodes_init(struct hub *h)
{
    h->loc = calloc(1, sizeof(*h->loc));
    if (!h->loc)
        return MAMORI_ERR_NOMEM;
    pthread_mutex_init(&h->loc->mu, NULL);
    return MAMORI_OK;
}

void nodes_free(struct hub *h)
{
    if (!h->loc)
        return;
    for (size_t i = 0; i < LOC_BUCKETS; i++)
        for (struct loc *l = h->loc->bucket[i], *next; l; l = next) {
            next = l->next;
            free(l);
        }
    pthread_mutex_destroy(&h->loc->mu);
    free(h->loc);
    h->loc = NULL;
}

static struct loc **find(struct hub_locations *t, const char *id)
{
    struct loc **p = &t->bucket[slot(id)];
    while (*p && strcmp((*p)->id, id) != 0)
        p = &(*p)->next;
    return p;
}

static bool node_ok(const struct hub *h, int node)
{
    return node >= 0 && (size_t)node < h->n_nodes;
}

void nodes_here(struct hub *h, const char *id, int node)
{
    if (!h->loc || !node_ok(h, node) || !proto_device_id_valid(id, strlen(id)))
        return;
    struct hub_locations *t = h->loc;
    pthread_mutex_lock(&t->mu);
    struct loc **p = find(t, id);
    if (!*p && (*p = calloc(1, sizeof(**p)))) {
        snprintf((*p)->id, sizeof((*p)->id), "%s", id);
        (*p)->node = -1;
    }
    if (*p && (*p)->node != node) {
        if ((*p)->node >= 0)
            t->per_node[(*p)->node]--;
        (*p)->node = node;
        t->per_node[node]++;
    }
    pthread_mutex_unlock(&t->mu);
}

void nodes_gone(struct hub *h, const char *id, int node)
{
    if (!h->loc || !node_ok(h, node))
        return;
    struct hub_locations *t = h->loc;
    pthread_mutex_lock(&t->mu);
    struct loc **p = find(t, id);
    if (*p && (*p)->node == node) {
        struct loc *l = *p;
        *p = l->next;
        t->per_node[node]--;
        free(l);
    }
    pthread_mutex_unlock(&t->mu);
}

int nodes_of(struct hub *h, const char *id)
{
    if (!h->loc)
        return -1;
    pthread_mutex_lock(&h->loc->mu);
    struct loc **p = find(h->loc, id);
    int node = *p ? (*p)->node : -1;
    pthread_mutex_unlock(&h->loc->mu);
    return node;
}

size_t nodes_count(struct hub *h, int node)
{
    if (!h->loc || !node_ok(h, node))
        return 0;
    pthread_mutex_lock(&h->loc->mu);
    size_t n = h->loc->per_node[node];
    pthread_mutex_unlock(&h->loc->mu);
    return n;
}
