// Outline of the toon mode: the inflated back faces drawn in the material's edge colour.

in vec3 v_normal;
in vec2 v_uv;
out vec4 color;

void main() {
    vec4 edge = materials[material].edge_color;
    if (edge.a < MIN_ALPHA) discard;
    color = edge;
}
