// DESIGN.md lighting: white directional light 0.5 along -z plus white ambient 0.5, both
// reflected by the surface's MMD colour (texture and sphere map included), so a surface
// facing the light shows that colour in full and one edge-on shows half of it.

in vec3 v_normal;
in vec2 v_uv;
out vec4 color;

const float AMBIENT = 0.5;
const float DIRECTIONAL = 0.5;

void main() {
    Material m = materials[material];
    vec3 n = facing_normal(v_normal);
    vec4 base = surface_colour(m, v_uv, n);
    if (base.a < MIN_ALPHA) discard;
    float lit = max(dot(n, LIGHT_TOWARDS), 0.0);
    vec3 rgb = base.rgb * (AMBIENT + DIRECTIONAL * lit) + DIRECTIONAL * m.specular.rgb * specular_term(m, n);
    color = vec4(clamp(rgb, 0.0, 1.0), base.a);
}
