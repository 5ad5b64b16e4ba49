// DESIGN.md lighting: white directional light 0.5 along -z plus white ambient 0.5.

in vec3 v_normal;
in vec2 v_uv;
out vec4 color;

void main() {
    Material m = materials[material];
    vec4 texel = textured(m, v_uv);
    float alpha = m.diffuse.a * texel.a;
    if (alpha < MIN_ALPHA) discard;
    vec3 n = facing_normal(v_normal);
    float lit = max(dot(n, LIGHT_TOWARDS), 0.0);
    vec3 rgb = texel.rgb * (0.5 * m.ambient.rgb + 0.5 * m.diffuse.rgb * lit)
             + 0.5 * m.specular.rgb * specular_term(m, n);
    color = vec4(clamp(rgb, 0.0, 1.0), alpha);
}
