// MMD's own look: ambient + diffuse under MMD's default light, texture, sphere map, toon ramp.

uniform sampler2D sphere_texture;
uniform sampler2D toon_texture;

in vec3 v_normal;
in vec2 v_uv;
out vec4 color;

const float MMD_LIGHT = 154.0 / 255.0;  // MMD's default light colour

void main() {
    Material m = materials[material];
    vec4 texel = textured(m, v_uv);
    vec3 n = facing_normal(v_normal);
    vec4 base = vec4(clamp(m.diffuse.rgb * MMD_LIGHT + m.ambient.rgb, 0.0, 1.0), m.diffuse.a) * texel;
    if (m.maps.y > 0.5) {
        vec4 sphere = texture(sphere_texture, n.xy * vec2(0.5, -0.5) + 0.5) * m.sphere_mul + m.sphere_add;
        base.rgb = m.maps.y > 1.5 ? base.rgb + sphere.rgb : base.rgb * sphere.rgb;
    }
    if (m.maps.z > 0.5) {
        float lit = dot(n, LIGHT_TOWARDS);
        base.rgb *= (texture(toon_texture, vec2(0.5, 0.5 - 0.5 * lit)) * m.toon_mul + m.toon_add).rgb;
    }
    base.rgb += m.specular.rgb * MMD_LIGHT * specular_term(m, n);
    if (base.a < MIN_ALPHA) discard;
    color = vec4(clamp(base.rgb, 0.0, 1.0), base.a);
}
